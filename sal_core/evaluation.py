"""Evaluate one merged run: grade every completion, then accuracy at each n for every vote and level.

Grading (sal_core.grading) runs once per distinct final answer; everything after it is integer
array work in sal_core.metrics, done for all problems at once.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sal_core import metrics
from sal_core.errors import ConfigError, ShardError
from sal_core.grading import NO_ANSWER, grade_all, last_boxed
from sal_core.io import read_metadata, read_table
from sal_core.prm.aggregation import AGGREGATIONS, aggregate_steps

log = logging.getLogger(__name__)

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
PROTOCOLS = ("default", "sal")


@dataclass
class EvalOptions:
    aggregation: str = "last"
    num_subsamples: int = 64
    timeout: float = 5.0
    workers: int = 2
    seed: int = 0
    bootstrap: int = 2000
    progress: bool = True
    protocol: str = "default"  # or "sal": search-and-learn's own scoring (sal_core.evaluation_sal)


@dataclass
class Graded:
    """Padded per-problem arrays after grading (see sal_core.metrics for the encoding)."""

    classes: np.ndarray
    scores: np.ndarray
    groups: np.ndarray
    valid: np.ndarray
    mean_tokens: np.ndarray  # per problem: mean tokens per completion (nan when unknown)
    levels: list[str | None]
    timeouts: np.ndarray  # per problem: timed-out checks


def normalise_level(level) -> str | None:
    """'Level 3', 3 and '3' all become '3'; missing levels are None."""
    if level is None or (isinstance(level, float) and np.isnan(level)):
        return None
    text = str(level).strip()
    match = re.fullmatch(r"(?i)level\s*(\S+)", text)
    return match.group(1) if match else (text or None)


def run_keys(path: str | Path, overrides: Mapping[str, object | None]) -> dict[str, str]:
    """Run keys from the parquet metadata, overridden by CLI flags, defaulted when absent."""
    path = Path(path)
    meta = read_metadata(path) if path.suffix not in {".jsonl", ".json"} else {}
    keys = {**DEFAULTS, **{k: v for k, v in meta.items() if v not in (None, "")}}
    keys.update({k: str(v) for k, v in overrides.items() if v is not None})
    return keys


def _distinct(answers: list[str | None]) -> tuple[list[str], list[int]]:
    """Distinct answers, most frequent first (ties: first seen), and each completion's index (-1: none)."""
    counts = Counter(a for a in answers if a is not None)
    first = {}
    for i, a in enumerate(answers):
        if a is not None and a not in first:
            first[a] = i
    order = sorted(counts, key=lambda a: (-counts[a], first[a]))
    position = {a: i for i, a in enumerate(order)}
    return order, [position[a] if a is not None else -1 for a in answers]


def _check_columns(frame: pd.DataFrame, path: Path) -> None:
    missing = [c for c in (*REQUIRED, "scores") if c not in frame.columns]
    if missing:
        raise ShardError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame["problem_id"].duplicated().any():
        dup = frame.loc[frame["problem_id"].duplicated(), "problem_id"].iloc[0]
        raise ShardError(f"{path}: problem {dup!r} appears more than once")


def grade_frame(frame: pd.DataFrame, path: Path, options: EvalOptions) -> Graded:
    """Grade all completions of a merged table into padded arrays."""
    if options.aggregation not in AGGREGATIONS:
        raise ConfigError(f"--aggregation: {options.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
    _check_columns(frame, path)
    num = len(frame)
    lengths = [len(c) for c in frame["completions"]]
    width = max(lengths, default=0)
    if width == 0:
        raise ShardError(f"{path}: no completions to evaluate")
    distinct, positions = [], []
    for texts in frame["completions"]:
        order, pos = _distinct([last_boxed(t) for t in texts])
        distinct.append(order)
        positions.append(pos)
    grades = grade_all(
        [str(a) for a in frame["answer"]],
        distinct,
        timeout=options.timeout,
        workers=options.workers,
        progress=options.progress,
    )
    classes = np.full((num, width), metrics.PAD, dtype=np.int64)
    scores = np.zeros((num, width))
    groups = np.tile(np.arange(width), (num, 1))
    mean_tokens = np.full(num, np.nan)
    has_groups = "groups" in frame.columns
    has_tokens = "completion_tokens" in frame.columns
    for p, row in enumerate(frame.itertuples(index=False)):
        size, pid = lengths[p], row.problem_id
        lookup = np.asarray(grades[p].classes + [NO_ANSWER], dtype=np.int64)
        classes[p, :size] = lookup[np.asarray(positions[p], dtype=np.int64)] if size else []
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
    valid = classes != metrics.PAD
    groups[~valid] = -1  # padding never shares a group with a real completion
    levels = [normalise_level(v) for v in frame["level"]] if "level" in frame.columns else [None] * num
    timeouts = np.array([g.timeouts for g in grades], dtype=np.int64)
    return Graded(classes, scores, groups, valid, mean_tokens, levels, timeouts)


def _group_size(graded: Graded) -> int:
    """Typical subtree size (1 unless completions share groups, as in DVTS)."""
    sizes = [
        np.unique(g[v], return_counts=True)[1].max()
        for g, v in zip(graded.groups, graded.valid, strict=True)
        if v.any()
    ]
    return int(np.median(sizes)) if sizes else 1


def compute_metrics(graded: Graded, keys: Mapping[str, str], options: EvalOptions) -> pd.DataFrame:
    """Metric rows (schema in docs/architecture.md) for every n, vote and level."""
    rng = np.random.default_rng(options.seed)
    counts = graded.valid.sum(1)
    num_samples = int(counts.max())
    method = keys.get("method", "best_of_n")
    num_classes = int(max(graded.classes.max(), 0)) + 1
    orders = metrics.subsample_orders(graded.groups, graded.valid, options.num_subsamples, rng)
    correct = ((graded.classes == 0) & graded.valid).sum(1)
    # DVTS: n is a budget of n / beam_width subtrees, each returning only its finished candidates,
    # so a problem may have fewer than n completions; subsample whole subtrees by budget.
    width = int(keys.get("beam_width") or _group_size(graded))
    by_budget = method == "dvts" and str(keys.get("n", "")).isdigit()
    sizes = (
        metrics.group_budgets(int(keys["n"]), width)
        if by_budget
        else metrics.n_values(num_samples, method, _group_size(graded))
    )
    labels, per_problem, tokens = [], [], []
    for n in sizes:
        if by_budget:
            votes = metrics.subsampled_group_accuracy(
                graded.classes, graded.scores, graded.groups, graded.valid, orders, n // width, num_classes
            )
        else:
            votes = metrics.subsampled_accuracy(graded.classes, graded.scores, orders, n, num_classes)
        votes["pass@k"] = metrics.pass_at_k(correct, counts, n)
        for vote, values in votes.items():
            labels.append((n, vote))
            per_problem.append(values)
            tokens.append(np.minimum(n, counts) * graded.mean_tokens)
    matrix = np.vstack(per_problem)
    token_matrix = np.vstack(tokens)
    rows = []
    level_names = sorted({lv for lv in graded.levels if lv is not None}, key=_level_sort_key)
    for level in ["all", *level_names]:
        mask = np.ones(len(graded.levels), bool) if level == "all" else np.array([lv == level for lv in graded.levels])
        sub = matrix[:, mask]
        low, high = metrics.bootstrap_ci(sub, rng, options.bootstrap)
        sub_tokens = token_matrix[:, mask]
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
                    "mean_tokens": float(np.nanmean(sub_tokens[r])) if np.isfinite(sub_tokens[r]).any() else np.nan,
                    "timeouts": int(graded.timeouts[mask].sum()),
                    "num_problems": int(mask.sum()),
                }
            )
    return pd.DataFrame(rows)


def _level_sort_key(level: str) -> tuple:
    return (0, float(level), "") if re.fullmatch(r"-?\d+(\.\d+)?", level) else (1, 0.0, level)


def evaluate_file(path: str | Path, overrides: Mapping[str, object | None], options: EvalOptions) -> pd.DataFrame:
    """Read a merged parquet/jsonl run and return its metric rows."""
    path = Path(path)
    keys = run_keys(path, overrides)
    frame = read_table(path)
    if options.protocol == "sal":
        from sal_core.evaluation_sal import sal_metrics

        return sal_metrics(frame, keys, options, str(path))
    graded = grade_frame(frame, path, options)
    return compute_metrics(graded, keys, options)
