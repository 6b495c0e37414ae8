# Config validation, the run grid, wildcard constraints and input functions.
# All logic lives in sal_core (settings, paths, pipeline), where tests reach it directly; every path
# comes from sal_core.paths.
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError

from sal_core import paths
from sal_core.constants import PREPARED_SOURCES
from sal_core.device_locks import local_gpu_count, under_slurm
from sal_core.errors import SalError
from sal_core.evaluation.disagreement import GRADER_FILES, SUFFIXES as GRADER_SUFFIXES
from sal_core.evaluation.optimal import optimal_flags
from sal_core.evaluation.protocols import evaluation_flags, evaluation_graders, grader_flag, evaluation_protocols
from sal_core.executable import put_sal_on_path
from sal_core.job_devices import grid_gpus
from sal_core.partitions import Request, check_requests, read_partitions
from sal_core.plan import JOB_MESSAGE, Plan, for_snakemake
from sal_core.pipeline.prepare_dataset import snapshot_problems
from sal_core.pipeline.stage_models import dry_run_requested, unstaged_line
from sal_core.resources import GROWING, grows_with_attempt, per_attempt, rule_value, setting_name
from sal_core.settings.check import check_config
from sal_core.settings.endpoint import write_servers_file
from sal_core.tables import write_lines_if_changed

try:
    put_sal_on_path()  # jobs run the sal next to this Python, also without an activated environment
    GRID = check_config(config, f"{workflow.basedir}/schemas/config.schema.yaml")
    DATASET = GRID.dataset.name
    PROBLEMS = paths.PROBLEMS.format(dataset=DATASET)
    # The dataset is loaded (and validated) once, here, and snapshotted for the jobs; the shards of a
    # run are cut from its length by the run's shard size (sal_core.plan.Plan.run_shards).
    NUM_PROBLEMS = snapshot_problems(GRID.dataset, PROBLEMS)
    # Server locations reach jobs through this file (`--servers`; its path, a constant, is their only
    # param): moving a server changes no job's settings, so it reruns nothing (paths.SERVERS).
    SERVERS = str(write_servers_file(GRID.servers, paths.SERVERS.format(dataset=DATASET)))
    # the first protocol drives the tables and plots as one always did; the others get their own
    PROTOCOLS = evaluation_protocols(config.get("evaluation", {}))
    # evaluation.graders: several write an accuracy column each and the run's grader files
    GRADERS = evaluation_graders(config.get("evaluation", {}))
    # GPUs per generate / score job (the rules' `gpu` resource, unless the config's resources say).
    # Locally Snakemake's `gpu` resource counts the machine's GPUs (profiles/default; undeclared: those
    # it shows that nobody holds now) and each job's sal step locks which ones it uses
    # (sal_core.device_locks); Slurm binds its own.
    GPUS = grid_gpus(GRID)
    if workflow.local_exec and not under_slurm():
        DECLARED_GPUS = getattr(workflow.global_resources.get("gpu"), "value", None)
        LOCAL_GPUS = local_gpu_count(DECLARED_GPUS)
        if DECLARED_GPUS is None and LOCAL_GPUS:
            workflow.register_resource("gpu", LOCAL_GPUS)
except SalError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

# Jobs load Hub models offline, from what `sal stage-models` put in the Hub cache (docs/offline.md):
# a model not staged stops a run here, in one line; a dry run only says so.
UNSTAGED = unstaged_line(GRID, [str(f) for f in workflow.overwrite_configfiles or ["config/config.yaml"]])
if UNSTAGED and not dry_run_requested(sys.argv):
    raise WorkflowError(UNSTAGED)
if UNSTAGED:
    print(f"warning: {UNSTAGED}", file=sys.stderr)

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
    protocol=_one_of(PROTOCOLS),


# Memory and time grow with the attempt when the profile's defaults do (profiles/slurm); then they
# are callables of `attempt`, else plain values (sal_core.resources says why).
GROWS = grows_with_attempt(workflow.resource_settings.default_resources or {})
# the partition's limits later attempts stop growing at ("rule.key": value), read when a Slurm run starts
CAPS = {}


def resource(rule_name, key):
    """A rule's threads, gpu, mem_mb or runtime: the config's `resources` block over the workflow's
    defaults (sal_core.resources.RULE_DEFAULTS). A profile supplies defaults only: it must not
    `set-resources` these rules' keys (profiles/slurm-served does so for its client rules only)."""
    if key == "gpu" and rule_name in GPUS and key not in RESOURCES.get(rule_name, {}):
        return GPUS[rule_name]  # the most any of the grid's jobs needs (0: all served or on the CPU)
    value = rule_value(RESOURCES, rule_name, key)
    return per_attempt(value, CAPS, f"{rule_name}.{key}") if key in GROWS else value


def check_partition_limits():
    """On Slurm, before any job is submitted: every rule's first attempt fits its partition (else one
    line naming the setting), and later attempts grow at most to the partition's limits."""
    if getattr(workflow.executor_plugin, "name", None) != "slurm":
        return
    first = {}
    for job in workflow.dag.needrun_jobs():
        if not job.is_local:
            first.setdefault(job.rule.name, job)
    requests = [
        Request(rule, job.resources.get("slurm_partition"), job.resources.get("mem_mb"), job.resources.get("runtime"))
        for rule, job in first.items()
    ]
    overwritten = workflow.resource_settings.overwrite_resources or {}
    names = {
        (rule, key): setting_name(RESOURCES, rule, key, key in overwritten.get(rule, {}))
        for rule in first
        for key in GROWING
    }
    try:
        CAPS.update(check_requests(requests, read_partitions(), names))
    except SalError as err:
        raise WorkflowError(f"invalid configuration: {err}") from None


onstart:
    check_partition_limits()


# Inputs and params from sal_core.plan: computed once per run, in the form Snakemake reads fastest.
PLAN = Plan(GRID, NUM_PROBLEMS)
generate_model_inputs = PLAN.generate_models()
generate_job = for_snakemake(PLAN.generate_job)
score_model_inputs = PLAN.score_models()
prm_settings = for_snakemake(PLAN.prm_json)
merge_completions = PLAN.merge_inputs(paths.COMPLETIONS)
merge_scores = PLAN.merge_inputs(paths.SCORES)
merge_shard_size = PLAN.merge_shard_size()
merged_metadata = for_snakemake(PLAN.merged_metadata)


def evaluation_options(with_protocol=True):
    return evaluation_flags(config.get("evaluation", {}), with_protocol)


# Every metrics path, one per line, for `sal aggregate --metrics-list`: a sweep's are far longer than
# one shell argument may be (Linux caps it at 128 KiB). Written when the workflow is parsed, as
# servers.json is (a rule that wrote it would cost Snakemake a parse of the workflow of its own),
# and only when it changed; the metrics files themselves are the aggregate rule's inputs.
ALL_METRICS = PLAN.per_run_and_prm(paths.METRICS)
METRICS_LIST = str(write_lines_if_changed(ALL_METRICS, paths.METRICS_LIST.format(dataset=DATASET)))
# The same for each further evaluation protocol (rule aggregate_protocol).
PROTOCOL_METRICS = {p: PLAN.per_run_and_prm(paths.PROTOCOL_METRICS.replace("{protocol}", p)) for p in PROTOCOLS[1:]}
PROTOCOL_METRICS_LISTS = {
    p: str(write_lines_if_changed(files, paths.PROTOCOL_METRICS_LIST.format(dataset=DATASET, protocol=p)))
    for p, files in PROTOCOL_METRICS.items()
}

# Compute-optimal by difficulty (rules/optimal.smk): each model's credit files, listed at parse time.
ALL_CREDIT = PLAN.per_run_and_prm(paths.CREDIT)
CREDIT_FILES = {m: [f for f in ALL_CREDIT if paths.run_keys(f)["model"] == m] for m in GRID.models}
CREDIT_LISTS = {
    m: str(write_lines_if_changed(files, paths.CREDIT_LIST.format(dataset=DATASET, model=m)))
    for m, files in CREDIT_FILES.items()
}
OPTIMAL_OPTIONS = optimal_flags(config.get("evaluation", {}), GRID.baseline_sampling)


def quoted(value):
    """A config value for a shell command, quoted (the schema already refuses unsafe characters;
    a safe value reads the same quoted, so its job's params do not change)."""
    return shlex.quote(value) if value else value


def pushed():
    """Hub upload receipts, when `push.enabled` (needs `push.repo`)."""
    settings = config.get("push", {})
    if not settings.get("enabled"):
        return []
    if not settings.get("repo"):
        raise WorkflowError("invalid configuration: push.repo: needed when push.enabled is true")
    return PLAN.per_run_and_prm(paths.PUSHED)


# one figure set per model: results/{dataset}/plots/{model}/{figure}.png
PLOT_FILES = paths.plot_files(GRID.models)


def get_final_outputs():
    return [
        *PLAN.missing_shard_targets(),
        *pushed(),
        paths.ACCURACY.format(dataset=DATASET),
        paths.COMPUTE_OPTIMAL.format(dataset=DATASET),
        *[f"{paths.PLOTS.format(dataset=DATASET)}/{path}" for path in PLOT_FILES],
        *[paths.PROTOCOL_ACCURACY.format(dataset=DATASET, protocol=p) for p in PROTOCOLS[1:]],
        *[paths.PROTOCOL_COMPUTE_OPTIMAL.format(dataset=DATASET, protocol=p) for p in PROTOCOLS[1:]],
        *grader_files(),
        *[p.format(dataset=DATASET, model=m) for m in GRID.models for p in (paths.OPTIMAL_TABLE, paths.OPTIMAL_PLOT)],
    ]


def grader_files():
    """Each run's grader files (rule evaluate) when evaluation.graders lists several, else none."""
    if len(GRADERS) < 2:
        return []
    return [f for suffix in GRADER_SUFFIXES.values() for f in PLAN.per_run_and_prm(GRADER_FILES + suffix)]
