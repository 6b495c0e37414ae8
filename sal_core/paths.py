"""Every file the workflow writes, from one set of templates that build and parse its paths.

The Snakefile's rules use these templates as their inputs and outputs (wildcards in braces), the
steps use them to read a shard's range back from its path, and tests use them to find results, so a
path is spelled exactly once. One folder per dataset, one per run (model x run id x sampling x
seed) inside it, one per shard inside that; logs mirror results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# One dataset: its snapshot and the tables and figures over all of its runs.
RESULTS = "results/{dataset}"
PROBLEMS = f"{RESULTS}/problems.parquet"
"""The dataset snapshot, written when the workflow is parsed; every job reads its problems from it."""
SERVERS = f"{RESULTS}/servers.json"
"""Where the served models and PRMs are (the config's `servers:` block), written when the workflow is
parsed; `generate` and `score` jobs read it (`--servers`). Only its path, a constant, is a parameter of
their rules; its contents are neither input nor parameter, so a server that moves reruns nothing."""
METRICS_LIST = f"{RESULTS}/metrics_files.txt"
"""The metrics files of all runs, one per line: a sweep has too many for one command line."""
ACCURACY = f"{RESULTS}/accuracy.csv"
COMPUTE_OPTIMAL = f"{RESULTS}/compute_optimal.csv"
#: the tables of each further `evaluation.protocols` entry (sal_core.evaluation.protocols)
PROTOCOL_METRICS_LIST = f"{RESULTS}/metrics_files.{{protocol}}.txt"
PROTOCOL_ACCURACY = f"{RESULTS}/accuracy.{{protocol}}.csv"
PROTOCOL_COMPUTE_OPTIMAL = f"{RESULTS}/compute_optimal.{{protocol}}.csv"
PLOTS = f"{RESULTS}/plots"
#: compute-optimal strategy by difficulty, per model (rule optimal, sal_core.evaluation.optimal)
OPTIMAL_TABLE = f"{RESULTS}/optimal/{{model}}.csv"
OPTIMAL_PLOT = f"{RESULTS}/optimal/{{model}}.png"
CREDIT_LIST = f"{RESULTS}/optimal/credit_files.{{model}}.txt"
"""A model's credit files, one per line, written at parse time (as METRICS_LIST)."""
#: the figures `sal plot` draws for each model into PLOTS/{model}/, by file stem (report captions:
#: workflow/report/{stem}.rst)
PLOT_NAMES = ("accuracy_vs_n", "accuracy_vs_tokens", "sampling_gain", "accuracy_by_level")

# One run: `{run}` is the run id (`bon`, `beam-n4.judge`), not the approach's name.
RUN = f"{RESULTS}/{{model}}/{{run}}/{{sampling}}/seed-{{seed}}"
MERGED = f"{RUN}/merged/{{prm}}.parquet"
METRICS = f"{RUN}/metrics/{{prm}}.parquet"
PROTOCOL_METRICS = f"{RUN}/metrics/{{prm}}.{{protocol}}.parquet"
"""A further evaluation protocol's metrics of a run (the first protocol's are METRICS)."""
CREDIT = f"{RUN}/credit/{{prm}}.parquet"
"""A run's per-problem credit at every n and vote (rule credit; sal_core.evaluation.credit)."""
PUSHED = f"{RUN}/pushed/{{prm}}.json"
"""Receipt of an upload of the merged file to the Hub (optional)."""
SHARD_FOLDER = "{start}-{end}"


def run_keys(path: str) -> dict[str, str] | None:
    """The wildcards of the run folder (RUN) a result path starts with, or None outside every run."""
    match = _RUN_FOLDER.match(path)
    return match.groupdict() if match else None


_RUN_FOLDER = re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(RUN)) + "/")


def shard_range(path: str | Path) -> tuple[int, int] | None:
    """The [start, end) range a shard file is named after (its `{start}-{end}` folder), if any."""
    for part in reversed(Path(path).parts):
        match = _SHARD_FOLDER.fullmatch(part)
        if match:
            return int(match[1]), int(match[2])
    return None


# One shard of a run: `sal generate` writes its completions, `sal score` one file per scoring PRM.
COMPLETIONS = f"{RUN}/shards/{SHARD_FOLDER}/completions.parquet"
SCORES = f"{RUN}/shards/{SHARD_FOLDER}/scores/{{prm}}.parquet"
_SHARD_FOLDER = re.compile(SHARD_FOLDER.replace("{start}", r"(\d+)").replace("{end}", r"(\d+)"))

# Logs mirror results.
LOGS = "logs/{dataset}"
RUN_LOGS = f"{LOGS}/{{model}}/{{run}}/{{sampling}}/seed-{{seed}}"


def plot_files(models: Iterable[str]) -> list[str]:
    """Every figure `sal plot` writes for these models, relative to the PLOTS folder."""
    return [f"{model}/{name}.png" for model in models for name in PLOT_NAMES]


def prepared_model(source: str) -> str:
    """The folder `sal prepare-model --source SOURCE` writes in the workflow."""
    return PREPARED_MODEL.format(source=source)


PREPARED_MODEL = "resources/models/{source}"

# The learn steps (docs/learn.md). A `labels:` entry samples its own problem set (snapshotted like the
# dataset) shard by shard, and labels each shard's steps; the step files train a PRM.
LABELS = "results/labels/{labels}"
LABEL_PROBLEMS = f"{LABELS}/problems.parquet"
LABEL_COMPLETIONS = f"{LABELS}/shards/{SHARD_FOLDER}/completions.parquet"
LABEL_STEPS = f"{LABELS}/shards/{SHARD_FOLDER}/steps.parquet"
LABEL_LOGS = "logs/labels/{labels}"
TRAINED_PRM = "resources/prms/{prm}"
"""A PRM trained by the workflow (`prms.<name>.train`): the train_prm rule's output folder."""
TRAIN_CHECKPOINTS = "{out}.checkpoints"
"""Where `sal train-prm --out OUT` keeps resumable checkpoints: beside OUT, not inside it, so Snakemake,
which deletes the output of a failed job, leaves them for the rerun to resume from."""
TRAIN_LOG = "logs/train_prm/{prm}.log"
PROCESSBENCH = "results/processbench"
PROCESSBENCH_TABLE = f"{PROCESSBENCH}/{{prm}}.csv"
PROCESSBENCH_SAMPLES = f"{PROCESSBENCH}/{{prm}}.samples.parquet"
PROCESSBENCH_PLOT = f"{PROCESSBENCH}/processbench.png"
PROCESSBENCH_LOGS = "logs/processbench"


def trained_prm(name: str) -> str:
    """The folder the train_prm rule writes for the PRM `name`."""
    return TRAINED_PRM.format(prm=name)
