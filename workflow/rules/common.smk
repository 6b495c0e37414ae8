# Config validation, the run grid, wildcard constraints and input functions.
# All logic lives in sal_core (settings, paths, pipeline), where tests reach it directly; every path
# comes from sal_core.paths.
import re

from snakemake.exceptions import WorkflowError

from sal_core import paths
from sal_core.constants import PREPARED_SOURCES
from sal_core.errors import SalError
from sal_core.pipeline.prepare_dataset import shard_ranges, snapshot_problems
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config
from sal_core.settings.endpoint import write_servers_file

try:
    GRID = check_config(config, f"{workflow.basedir}/schemas/config.schema.yaml")
    DATASET = GRID.dataset.name
    PROBLEMS = paths.PROBLEMS.format(dataset=DATASET)
    # The dataset is loaded (and validated) once, here, and snapshotted for the jobs.
    SHARDS = shard_ranges(snapshot_problems(GRID.dataset, PROBLEMS), GRID.dataset.shard_size)
    # Server locations reach jobs through this file (`--servers`; its path, a constant, is their only
    # param): moving a server changes no job's settings, so it reruns nothing (paths.SERVERS).
    SERVERS = str(write_servers_file(GRID.servers, paths.SERVERS.format(dataset=DATASET)))
except SalError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

SAL_ENV = "../envs/sal.yaml"
RESOURCES = config.get("resources", {})


def _one_of(names):
    return "|".join(re.escape(str(name)) for name in sorted(set(names)))


wildcard_constraints:
    dataset=_one_of([DATASET]),
    model=_one_of(GRID.models),
    run=_one_of(GRID.run_ids()),
    sampling=_one_of(config["samplings"]),
    seed=r"\d+",
    prm=_one_of(GRID.prms),
    start=r"\d+",
    end=r"\d+",
    source=_one_of(PREPARED_SOURCES),


def resource(rule_name, key, default):
    """A rule's resource from the config's `resources` block. Plain values on purpose: callables cost
    Snakemake a signature inspection per job (a third of DAG time at 45,000 jobs); profiles/slurm
    scales memory and runtime with the attempt number."""
    return RESOURCES.get(rule_name, {}).get(key, default)


def _prepared(path):
    """The folder, when a rule builds it (prepare_model, train_prm), so the job waits for it."""
    return [path] if path in GRID.built_folders else []


def _run(wildcards):
    return GRID.run(wildcards.model, wildcards.run, wildcards.sampling, wildcards.seed)


def generate_model_inputs(wildcards):
    """Prepared model folders a generate job needs (none for Hub or local models)."""
    run = _run(wildcards)
    folders = _prepared(run.job.model.path)
    if run.job.prm is not None:
        folders += _prepared(run.job.prm.path)
    return sorted(set(folders))


def generate_job(wildcards):
    return to_json(_run(wildcards).job)


def score_model_inputs(wildcards):
    return _prepared(GRID.prms[wildcards.prm].path)


def prm_settings(wildcards):
    return to_json(GRID.prms[wildcards.prm])


def _shard_files(wildcards, template):
    return [template.format(start=start, end=end, **wildcards) for start, end in SHARDS]


def merge_completions(wildcards):
    return _shard_files(wildcards, paths.COMPLETIONS)


def merge_scores(wildcards):
    return _shard_files(wildcards, paths.SCORES)


def merged_metadata(wildcards):
    """What the merged file records about its run (read back by evaluate and push)."""
    return to_json(_run(wildcards).metadata(DATASET, wildcards.prm))


def evaluation_options():
    options = config.get("evaluation", {})
    flags = {
        "protocol": "--protocol",
        "aggregation": "--aggregation",
        "num_subsamples": "--num-subsamples",
        "timeout": "--timeout",
    }
    return " ".join(f"{flag} {options[key]}" for key, flag in flags.items() if key in options)


def _run_wildcards(run):
    """The wildcard values of a run's result paths."""
    return dict(
        dataset=DATASET,
        model=run.model,
        run=run.run_id,
        sampling=run.sampling,
        seed=run.seed,
    )


def per_run_and_prm(template):
    """`template` filled for every run and each of its scoring PRMs."""
    return sorted({template.format(prm=prm, **_run_wildcards(run)) for run in GRID.runs for prm in run.score_prms})


def all_metrics():
    return per_run_and_prm(paths.METRICS)


def all_shards():
    """Every shard file of every run. They are targets themselves, so a deleted or quarantined
    shard is missing work: it is recomputed, and what was built from it reruns as its input changed.
    """
    files = []
    for run in GRID.runs:
        keys = _run_wildcards(run)
        for start, end in SHARDS:
            files.append(paths.COMPLETIONS.format(start=start, end=end, **keys))
            files += [paths.SCORES.format(start=start, end=end, prm=prm, **keys) for prm in run.score_prms]
    return files


def pushed():
    """Hub upload receipts, when `push.enabled` (needs `push.repo`)."""
    settings = config.get("push", {})
    if not settings.get("enabled"):
        return []
    if not settings.get("repo"):
        raise WorkflowError("invalid configuration: push.repo: needed when push.enabled is true")
    return per_run_and_prm(paths.PUSHED)


# one figure set per model: results/{dataset}/plots/{model}/{figure}.png
PLOT_FILES = paths.plot_files(GRID.models)


def get_final_outputs():
    return [
        *all_shards(),
        *pushed(),
        paths.ACCURACY.format(dataset=DATASET),
        paths.COMPUTE_OPTIMAL.format(dataset=DATASET),
        *[f"{paths.PLOTS.format(dataset=DATASET)}/{path}" for path in PLOT_FILES],
    ]


def write_path_list(files, out, log):
    """One path per line: how a rule hands thousands of paths to a command."""
    from sal_core.tables import write_text_atomic

    write_text_atomic("".join(f"{path}\n" for path in files), out)
    Path(log).write_text(f"{len(files)} paths in {out}\n")
