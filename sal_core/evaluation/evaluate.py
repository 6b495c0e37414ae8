"""One run's metrics: grade every completion, then accuracy at each n for every vote and level.

Grading (sal_core.evaluation.grading) runs once per distinct final answer; everything after it is integer
array work in sal_core.evaluation.votes, done for all problems at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from sal_core.constants import AGGREGATIONS, PARTICLE_FILTERING, PASS_AT_K
from sal_core.errors import ConfigError, ShardError
from sal_core.evaluation import votes
from sal_core.evaluation.compute import Spend, spend_columns
from sal_core.evaluation.graders import DEFAULT, grade_with, parse_graders
from sal_core.evaluation.levels import level_sort_key, normalise_level
from sal_core.evaluation.verdicts import PAD, Verdicts
from sal_core.prm.step_aggregation import aggregate_steps
from sal_core.settings.build import option, require_at_least, require_one_of
from sal_core.tables import read_metadata

RUN_KEYS = ("dataset", "model", "approach", "method", "sampling", "seed", "prm")
#: used when neither the file's metadata nor a CLI flag gives a run key
DEFAULTS = {
    "dataset": "unknown",
    "model": "unknown",
    "approach": "bon",
    "method": "best_of_n",
    "sampling": "default",
    "seed": "0",
    "prm": "none",
}
REQUIRED = ("problem_id", "answer", "completions")


@dataclass
class EvalOptions:
    """How `sal evaluate` grades and estimates; each option is also a command-line flag."""

    aggregation: str = option("last", "how step scores become one score for naive/weighted best-of-n")
    num_subsamples: int = option(64, "random subsamples averaged per problem and n")
    timeout: float = option(5.0, "wall-clock seconds allowed for one parse or comparison")
    workers: int = option(2, "grading processes")
    seed: int = option(0, "seed for subsamples and the bootstrap")
    bootstrap: int = option(2000, "bootstrap resamples over problems for the 95%% interval")
    progress: bool = True
    protocol: str = option(
        "default",
        "default: random subsamples, fractional ties (sound); sal: search-and-learn's own scoring, the first "
        "n completions, the first group wins ties (to compare with published numbers)",
    )
    graders: str = option(
        DEFAULT,
        "graders, comma-separated, the first driving the metrics: default (ours), sal (search-and-learn's "
        "answer rules and equality), math-verify (its default settings); each further one adds an "
        "accuracy_<grader> column",
    )
    grader_files: str | None = option(
        None, "write the graders' audit files PREFIX.grades.parquet, .accuracy.csv, .disagreements.csv, .png"
    )

    def grader_names(self) -> list[str]:
        return parse_graders(self.graders)

    @classmethod
    def help(cls, name: str) -> str:
        """The option's help text with its default, for argparse."""
        item = next(f for f in fields(cls) if f.name == name)
        return f"{item.metadata['help']} (default: {item.default})"

    def validate(self) -> None:
        """One clear line per bad option, before any grading starts."""
        require_one_of(self.aggregation, AGGREGATIONS, "--aggregation")
        require_at_least(self.num_subsamples, 1, "--num-subsamples")
        if self.timeout <= 0:
            raise ConfigError(f"--timeout: must be positive, got {self.timeout}")
        require_at_least(self.workers, 1, "--workers")
        names = self.grader_names()  # a bad name: one line before anything is read
        if self.protocol != "default" and names != [DEFAULT]:
            raise ConfigError(f"--graders: only with --protocol default ({self.protocol} has its own grader)")


@dataclass
class Graded:
    """Padded per-problem arrays after grading (see sal_core.evaluation.votes for the encoding)."""

    classes: np.ndarray
    scores: np.ndarray
    groups: np.ndarray
    valid: np.ndarray
    mean_tokens: np.ndarray  # per problem: mean tokens per returned completion (nan when unknown)
    levels: list[str | None]
    timeouts: np.ndarray  # per problem: timed-out checks
    spend: Spend | None = None  # per problem: everything the run generated and its PRMs read
    selected: np.ndarray | None = None  # per problem: the method's own choice (particle filtering), -1: none
    verdicts: Verdicts | None = None  # the grader's reading of every completion (sal_core.evaluation.graders)


def read_run_keys(path: str | Path, overrides: Mapping[str, object | None]) -> dict[str, str]:
    """Run keys from the parquet metadata, overridden by CLI flags, defaulted when absent."""
    path = Path(path)
    meta = read_metadata(path) if path.suffix not in {".jsonl", ".json"} else {}
    keys = {**DEFAULTS, **{k: v for k, v in meta.items() if v not in (None, "")}}
    keys.update({k: str(v) for k, v in overrides.items() if v is not None})
    return keys


def check_columns(frame: pd.DataFrame, path: Path) -> None:
    missing = [c for c in (*REQUIRED, "scores") if c not in frame.columns]
    if missing:
        raise ShardError(f"{path}: missing column(s) {', '.join(missing)}")
    ids = frame["problem_id"]
    absent = ids.isna() | ids.astype(str).str.strip().eq("")
    if absent.any():
        raise ShardError(f"{path}: row {int(absent.to_numpy().nonzero()[0][0])} has no problem_id")
    if ids.duplicated().any():
        dup = frame.loc[ids.duplicated(), "problem_id"].iloc[0]
        raise ShardError(f"{path}: problem {dup!r} appears more than once")


def grade_frame(frame: pd.DataFrame, path: Path, options: EvalOptions) -> Graded:
    """Grade all completions of a merged table into padded arrays."""
    options.validate()
    check_columns(frame, path)
    num = len(frame)
    lengths = [len(c) for c in frame["completions"]]
    width = max(lengths, default=0)
    if width == 0:
        raise ShardError(f"{path}: no completions to evaluate")
    verdicts = grade_with(options.grader_names()[0], frame, options.timeout, options.workers, options.progress)
    classes = verdicts.classes
    scores = np.zeros((num, width))
    groups = np.tile(np.arange(width), (num, 1))
    mean_tokens = np.full(num, np.nan)
    has_groups = "groups" in frame.columns
    has_tokens = "completion_tokens" in frame.columns
    for p, row in enumerate(frame.itertuples(index=False)):
        size, pid = lengths[p], row.problem_id
        step_scores = row.scores
        if step_scores is None or len(step_scores) != size:
            got = 0 if step_scores is None else len(step_scores)
            raise ShardError(f"{path}: problem {pid!r} has {size} completions but {got} score lists")
        scores[p, :size] = [aggregate_steps(s if s is not None else [], options.aggregation) for s in step_scores]
        if has_groups and row.groups is not None and len(row.groups) > 0:
            if len(row.groups) != size:
                raise ShardError(f"{path}: problem {pid!r} has {size} completions but {len(row.groups)} groups")
            groups[p, :size] = np.asarray(row.groups, dtype=np.int64)
        if has_tokens and row.completion_tokens is not None and len(row.completion_tokens) == size and size:
            mean_tokens[p] = float(np.mean(np.asarray(row.completion_tokens, dtype=float)))
    valid = classes != PAD
    groups[~valid] = -1  # padding never shares a group with a real completion
    levels = [normalise_level(v) for v in frame["level"]] if "level" in frame.columns else [None] * num
    selected = read_selected(frame, lengths, path)
    spend = Spend.read(frame)
    return Graded(classes, scores, groups, valid, mean_tokens, levels, verdicts.timeouts, spend, selected, verdicts)


def read_selected(frame: pd.DataFrame, lengths: list[int], path: Path) -> np.ndarray | None:
    """Each problem's selected completion (particle filtering's `selected` column), or None without one."""
    if "selected" not in frame.columns:
        return None
    picked = pd.to_numeric(frame["selected"], errors="coerce").fillna(-1).to_numpy(dtype=np.int64)
    bad = [p for p, (i, size) in enumerate(zip(picked, lengths, strict=True)) if i >= size]
    if bad:
        pid = frame["problem_id"].iloc[bad[0]]
        raise ShardError(f"{path}: problem {pid!r} selects completion {picked[bad[0]]} of {lengths[bad[0]]}")
    return picked


def _group_size(graded: Graded) -> int:
    """Typical subtree size (1 unless completions share groups, as in DVTS)."""
    sizes = [
        np.unique(g[v], return_counts=True)[1].max()
        for g, v in zip(graded.groups, graded.valid, strict=True)
        if v.any()
    ]
    return int(np.median(sizes)) if sizes else 1


@dataclass
class RunCredit:
    """Per-problem credit of one run under one protocol: what metric_rows averages over problems, and
    what the compute-optimal analysis reads problem by problem (sal_core.evaluation.credit)."""

    labels: list[tuple[int, str]]  # (n, vote) of each matrix row
    matrix: np.ndarray  # [labels, P] credit in [0, 1]
    spent: dict[str, np.ndarray]  # token count name -> [labels, P]
    levels: list[str | None]
    timeouts: np.ndarray  # [P]
    num_samples: np.ndarray  # [P] completions of the problem
    num_correct: np.ndarray  # [P] of them correct: pass@1 = num_correct / num_samples
    mean_score: np.ndarray  # [P] mean of the completions' aggregated PRM scores

    def metrics(self, keys: Mapping[str, str], options: EvalOptions, rng: np.random.Generator) -> pd.DataFrame:
        return metric_rows(self.matrix, self.spent, self.labels, self.levels, self.timeouts, keys, options, rng)


def run_credit(graded: Graded, keys: Mapping[str, str], options: EvalOptions, rng: np.random.Generator) -> RunCredit:
    """Every problem's credit at every n and vote, subsamples drawn from `rng` (its first draw, so a
    fresh generator of the same seed gives the metrics' own subsamples)."""
    orders = votes.subsample_orders(graded.groups, graded.valid, options.num_subsamples, rng)
    labels, matrix, spent = credit_matrix(graded, keys, orders)
    num_samples = graded.valid.sum(1)
    num_correct = ((graded.classes == 0) & graded.valid).sum(1)
    score_sum = np.where(graded.valid, graded.scores, 0.0).sum(1)
    mean_score = np.where(num_samples > 0, score_sum / np.maximum(num_samples, 1), np.nan)
    return RunCredit(labels, matrix, spent, graded.levels, graded.timeouts, num_samples, num_correct, mean_score)


def compute_metrics(graded: Graded, keys: Mapping[str, str], options: EvalOptions) -> pd.DataFrame:
    """Metric rows (schema in docs/architecture.md) for every n, vote and level."""
    rng = np.random.default_rng(options.seed)
    return run_credit(graded, keys, options, rng).metrics(keys, options, rng)


def metric_rows(
    matrix: np.ndarray,
    spent: Mapping[str, np.ndarray],
    labels: list[tuple[int, str]],
    levels: list[str | None],
    timeouts: np.ndarray,
    keys: Mapping[str, str],
    options: EvalOptions,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One row per (level, n, vote) from per-problem credit [labels, P] and token counts (`spent`:
    column name -> [labels, P]): the mean over problems with a bootstrap 95% interval, and each token
    count's mean over the problems that have it; every protocol writes its rows through here."""
    rows = []
    level_names = sorted({lv for lv in levels if lv is not None}, key=level_sort_key)
    for level in ["all", *level_names]:
        mask = np.array([level == "all" or lv == level for lv in levels])
        sub = matrix[:, mask]
        low, high = votes.bootstrap_ci(sub, rng, options.bootstrap)
        for r, (n, vote) in enumerate(labels):
            rows.append(
                {
                    **{k: str(keys[k]) for k in RUN_KEYS},
                    "aggregation": options.aggregation,
                    "n": n,
                    "vote": vote,
                    "level": level,
                    "accuracy": float(sub[r].mean()),
                    "ci_low": float(low[r]),
                    "ci_high": float(high[r]),
                    **{name: _nanmean(values[r, mask]) for name, values in spent.items()},
                    "timeouts": int(timeouts[mask].sum()),
                    "num_problems": int(mask.sum()),
                }
            )
    return pd.DataFrame(rows)


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else np.nan


def credit_matrix(
    graded: Graded, keys: Mapping[str, str], orders: np.ndarray
) -> tuple[list[tuple[int, str]], np.ndarray, dict[str, np.ndarray]]:
    """Per (n, vote) label: each problem's credit [labels, P] and token counts (name -> [labels, P])."""
    counts = graded.valid.sum(1)
    method = keys.get("method", "best_of_n")
    num_classes = int(max(graded.classes.max(), 0)) + 1
    correct = ((graded.classes == 0) & graded.valid).sum(1)
    # DVTS: n is a budget of n / beam_width subtrees, each returning only its finished candidates,
    # so a problem may have fewer than n completions; subsample whole subtrees by budget.
    width = int(keys.get("beam_width") or _group_size(graded))
    by_budget = method == "dvts" and str(keys.get("n", "")).isdigit()
    sizes = (
        votes.group_budgets(int(keys["n"]), width)
        if by_budget
        else votes.n_values(int(counts.max()), method, _group_size(graded))
    )
    if method == PARTICLE_FILTERING and str(keys.get("n", "")).isdigit():
        sizes = [int(keys["n"])]  # n is the budget: particle Gibbs returns n / sweeps particles, all of them used
    labels, per_problem, spent = [], [], []
    for n in sizes:
        columns = {"mean_tokens": np.minimum(n, counts) * graded.mean_tokens}
        unknown = np.full(len(counts), np.nan)
        spend = graded.spend.at(method, n, width, first_n=False) if graded.spend else (unknown, unknown)
        columns.update(spend_columns(*spend))
        if by_budget:
            credit = votes.subsampled_group_accuracy(
                graded.classes, graded.scores, graded.groups, graded.valid, orders, n // width, num_classes
            )
        else:
            credit = votes.subsampled_accuracy(graded.classes, graded.scores, orders, n, num_classes)
        credit[PASS_AT_K] = votes.pass_at_k(correct, counts, n)
        if graded.selected is not None:
            credit[votes.SELECTED] = votes.selected_credit(graded.classes, graded.selected)
        for vote, values in credit.items():
            labels.append((n, vote))
            per_problem.append(values)
            spent.append(columns)
    return labels, np.vstack(per_problem), {name: np.vstack([c[name] for c in spent]) for name in spent[0]}
