"""What the Snakefile asks of the grid, in the form Snakemake reads fastest at 45,000 jobs.

Snakemake calls an input or params function once per job and inspects its signature each time
(three times, in fact); a path template with `{wildcards}` costs it only a substitution, and every
input, even an empty one, costs it bookkeeping. So a job's settings are serialised once per run (not
once per shard) by functions whose signature is recorded once (`for_snakemake`), the shard files a
merge reads are templates, and model folders are an input only when the config has models that a
rule builds (prepared or trained). The targets of `all` name only the shard files that are missing
while something was built from them, which keeps a deleted, truncated-then-quarantined or lost shard
missing work without making 43,000 files targets (docs/architecture.md, "Missing work").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from sal_core import paths
from sal_core.settings.build import to_json
from sal_core.settings.grid import Grid, Run

#: what Snakemake prints for a job (the rules' `message`): one line, the rule and the file it makes,
#: which names the run and the shard; the full command goes to the job's log (sal logs it first).
JOB_MESSAGE = "{rule} {output[0]}"


def for_snakemake(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`method` as a plain function of the wildcards whose signature Snakemake need not inspect for
    every job: recorded once with Snakemake's own helper, as its `subpath` and `lookup` do."""

    def function(wildcards: Any) -> Any:
        return method(wildcards)

    try:
        from snakemake.common import get_function_params, overwrite_function_params
    except ImportError:  # another Snakemake: it inspects the function per job, which only costs time
        return function
    overwrite_function_params(function, get_function_params(function))
    return function


class Plan:
    """The grid of one config with its shard ranges, as inputs, params and targets for the rules."""

    def __init__(self, grid: Grid, shards: list[tuple[int, int]]) -> None:
        self.grid = grid
        self.dataset = grid.dataset.name
        self.shards = shards
        self._jobs: dict[tuple[str, str, str, int], str] = {}
        self._prms = {name: to_json(prm) for name, prm in grid.prms.items()}

    @property
    def dataset_version(self) -> str:
        """A digest of the dataset settings, a param of every generate job instead of the snapshot as
        an input: a changed dataset reruns every generate job (its params changed), a snapshot
        written again for the same dataset reruns none, and Snakemake looks up no producer for
        21,600 jobs' copy of one file that exists before any job (it is written at parse time)."""
        return hashlib.sha256(self.grid.dataset.fingerprint().encode()).hexdigest()[:16]

    def run(self, wildcards: Any) -> Run:
        return self.grid.run(wildcards.model, wildcards.run, wildcards.sampling, wildcards.seed)

    def generate_job(self, wildcards: Any) -> str:
        """The GenerateJob of a shard's run as JSON, serialised once per run: every shard of a run
        shares it, and Snakemake's params check reruns exactly the shards whose settings changed."""
        key = (wildcards.model, wildcards.run, wildcards.sampling, int(wildcards.seed))
        if key not in self._jobs:
            self._jobs[key] = to_json(self.grid.run(*key).job)
        return self._jobs[key]

    def prm_json(self, wildcards: Any) -> str:
        """A scoring PRM's settings as JSON (serialised once per PRM)."""
        return self._prms[wildcards.prm]

    def merged_metadata(self, wildcards: Any) -> str:
        """What the merged file records about its run (read back by evaluate and push)."""
        return to_json(self.run(wildcards).metadata(self.dataset, wildcards.prm))

    def generate_models(self) -> dict[str, Callable[[Any], list[str]]]:
        """A generate job's named input `models` (its prepared policy and in-search PRM folders), for
        `**` in the rule: none unless the config prepares models."""
        if not self.grid.built_folders:
            return {}

        def folders(wildcards: Any) -> list[str]:
            job = self.run(wildcards).job
            return self.grid.built(job.model.path, *([job.prm.path] if job.prm else []))

        return {"models": for_snakemake(folders)}

    def score_models(self) -> dict[str, Callable[[Any], list[str]]]:
        """A score job's named input `models` (its prepared PRM folder), as for generate_models."""
        if not self.grid.built_folders:
            return {}
        return {"models": for_snakemake(lambda wildcards: self.grid.built(self.grid.prms[wildcards.prm].path))}

    def shard_templates(self, template: str) -> list[str]:
        """`template` for every shard of a run, with the run's own wildcards left for Snakemake."""
        return [template.replace("{start}", str(start)).replace("{end}", str(end)) for start, end in self.shards]

    def run_wildcards(self, run: Run) -> dict[str, Any]:
        """The wildcard values of a run's result paths."""
        return dict(dataset=self.dataset, model=run.model, run=run.run_id, sampling=run.sampling, seed=run.seed)

    def per_run_and_prm(self, template: str) -> list[str]:
        """`template` filled for every run and each of its scoring PRMs."""
        runs = self.grid.runs
        return sorted({template.format(prm=prm, **self.run_wildcards(run)) for run in runs for prm in run.score_prms})

    def shard_files(self, run: Run) -> list[str]:
        """Every shard file of a run: completions and one scores file per scoring PRM."""
        keys = self.run_wildcards(run)
        files = []
        for start, end in self.shards:
            files.append(paths.COMPLETIONS.format(start=start, end=end, **keys))
            files += [paths.SCORES.format(start=start, end=end, prm=prm, **keys) for prm in run.score_prms]
        return files

    def missing_shard_targets(self, exists: Callable[[str], bool] = os.path.exists) -> list[str]:
        """Shard files `all` must name: the missing ones of runs that something was built from.

        Snakemake does not rerun a job for a missing file that only an up-to-date result needs, so
        a shard deleted after its merge would be silently skipped. Only then does it need naming:
        while neither the dataset's tables nor any merged, metrics or pushed file of its run exist,
        the chain from the missing tables down to the merge asks for the shard anyway.
        """
        dataset = {"dataset": self.dataset}
        tables = (paths.ACCURACY, paths.COMPUTE_OPTIMAL)  # not METRICS_LIST: written at parse time
        tables_built = any(exists(table.format(**dataset)) for table in tables)
        targets = []
        for run in self.grid.runs:
            if tables_built or self._run_built(run, exists):
                targets += [path for path in self.shard_files(run) if not exists(path)]
        return targets

    def _run_built(self, run: Run, exists: Callable[[str], bool]) -> bool:
        keys = self.run_wildcards(run)
        results: Iterable[str] = (paths.MERGED, paths.METRICS, paths.PUSHED)
        return any(exists(result.format(prm=prm, **keys)) for result in results for prm in run.score_prms)
