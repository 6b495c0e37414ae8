"""What the Snakefile asks of the grid, in the form Snakemake reads fastest at 45,000 jobs.

Snakemake calls an input or params function once per job and inspects its signature each time
(three times, in fact); a path template with `{wildcards}` costs it only a substitution, and every
input, even an empty one, costs it bookkeeping. So a job's settings are serialised once per run (not
once per shard) by functions whose signature is recorded once (`for_snakemake`), the shard files a
merge reads are templates (looked up by run only where approaches have shard sizes of their own),
and model folders are an input only when the config has models that a rule builds (prepared or
trained). The targets of `all` name only the shard files that are missing while something was built
from them, which keeps a deleted, truncated-then-quarantined or lost shard missing work without
making 43,000 files targets (docs/architecture.md, "Missing work").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from sal_core import paths
from sal_core.pipeline.prepare_dataset import shard_ranges
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

    def __init__(self, grid: Grid, num_problems: int) -> None:
        self.grid = grid
        self.dataset = grid.dataset.name
        self.num_problems = num_problems
        self._ranges: dict[int, list[tuple[int, int]]] = {}
        #: the dataset's shards (`dataset.shard_size`); a run's own are `run_shards`
        self.shards = self.shards_of(grid.dataset.shard_size)
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

    def shards_of(self, shard_size: int) -> list[tuple[int, int]]:
        """The dataset's rows cut into shards of `shard_size` (computed once per size)."""
        if shard_size not in self._ranges:
            self._ranges[shard_size] = shard_ranges(self.num_problems, shard_size)
        return self._ranges[shard_size]

    def run_shards(self, run: Run) -> list[tuple[int, int]]:
        """A run's shards: its approach's `shard_size`, else the dataset's."""
        return self.shards_of(run.shard_size)

    def shard_templates(self, template: str, shards: list[tuple[int, int]] | None = None) -> list[str]:
        """`template` for every shard (default: the dataset's), with the run's own wildcards left for Snakemake."""
        shards = self.shards if shards is None else shards
        return [template.replace("{start}", str(start)).replace("{end}", str(end)) for start, end in shards]

    def _uniform_shard_size(self) -> int | None:
        """The shard size every run shares (the dataset's unless every approach sets another), else None."""
        sizes = {run.shard_size for run in self.grid.runs} or {self.grid.dataset.shard_size}
        return sizes.pop() if len(sizes) == 1 else None

    def merge_inputs(self, template: str) -> list[str] | Callable[[Any], list[str]]:
        """A merge job's shard inputs: plain templates while every run shares one shard size (no input
        function for Snakemake to call per job); with approaches of their own `shard_size`, a lookup of
        the run's templates by its `{run}` wildcard (the run id names its approach)."""
        size = self._uniform_shard_size()
        if size is not None:
            return self.shard_templates(template, self.shards_of(size))
        by_run = {run.run_id: self.shard_templates(template, self.run_shards(run)) for run in self.grid.runs}
        return for_snakemake(lambda wildcards: by_run[wildcards.run])

    def merge_shard_size(self) -> int | Callable[[Any], int]:
        """`sal merge --shard-size` (it names the shard of a missing problem): plain while uniform."""
        size = self._uniform_shard_size()
        if size is not None:
            return size
        by_run = {run.run_id: run.shard_size for run in self.grid.runs}
        return for_snakemake(lambda wildcards: by_run[wildcards.run])

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
        for start, end in self.run_shards(run):
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
