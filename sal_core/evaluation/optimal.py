"""Compute-optimal scaling by difficulty: per model, difficulty bin and budget, the cross-validated best
strategy, against Best-of-N at the same budget (docs/evaluation.md, *Compute-optimal by difficulty*).

Strategies are the grid's approaches x samplings x votes (x scoring PRMs); at a budget of n the
strategies run at that n compete, at a token budget every strategy-and-n whose mean compute fits.
Per-problem credit comes from the runs' credit files (sal_core.evaluation.credit), averaged over the
seeds not used to estimate difficulty (sal_core.evaluation.difficulty); the choice is made by 2-fold
cross-validation within each bin (sal_core.evaluation.selection).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sal_core.errors import ConfigError
from sal_core.evaluation.difficulty import BEST_OF_N, Reference, difficulty_bins, problem_values, reference_run
from sal_core.evaluation.selection import (
    MIN_BIN,
    CrossValidated,
    bootstrap_interval,
    cross_validate,
    in_sample,
    most_chosen,
    random_folds,
)

STRATEGY = ["approach", "method", "sampling", "prm", "aggregation", "vote"]
KINDS = ("oracle", "predicted")
NOT_REACHED = "not reached within the grid"
#: the table's columns, in order (an analysis that cannot run writes the header alone)
COLUMNS = (
    "difficulty", "bin", "num_problems", "budget_type", "budget", "strategy", "chosen_share",
    "cv_accuracy", "ci_low", "ci_high", "cv_spread", "repeats", "in_sample_strategy", "in_sample_accuracy",
    "bon_majority", "majority_reaches_at", "majority_less_compute",
    "bon_weighted", "weighted_reaches_at", "weighted_less_compute",
    "difficulty_run", "difficulty_prm", "difficulty_samples", "difficulty_held_out", "scoring_seeds", "note",
)  # fmt: skip


@dataclass
class OptimalSettings:
    """The `evaluation.optimal` block of the config; each is a `sal optimal` flag."""

    bins: int = 5
    repeats: int = 20
    seed: int = 0
    bootstrap: int = 2000
    difficulty_approach: str | None = None
    difficulty_sampling: str | None = None
    predicted_prm: str | None = None
    baseline_sampling: str | None = None


@dataclass
class Cube:
    """Every strategy at every n (rows, cheapest first, then by label) x problems: mean credit over the
    scoring seeds; `rows` holds the strategy keys, n, `cost` (mean compute tokens) and `label`."""

    rows: pd.DataFrame
    credit: np.ndarray
    problems: list[str]

    def __post_init__(self) -> None:
        self.labels = self.rows["label"].tolist()
        self.ns = self.rows["n"].to_numpy()
        self.costs = self.rows["cost"].to_numpy(dtype=float)


def strategy_cube(credit: pd.DataFrame, seeds: tuple[str, ...]) -> Cube:
    part = credit[credit["seed"].isin(seeds) & (credit["vote"] != "pass@k")]
    keys = [*STRATEGY, "n"]
    mean = part.groupby([*keys, "problem_id"], sort=False).agg(
        credit=("credit", "mean"), cost=("compute_tokens", "mean")
    )
    table = mean["credit"].unstack("problem_id").dropna()
    cost = mean["cost"].groupby(level=keys, sort=False).mean().reindex(table.index)
    rows = table.index.to_frame(index=False)
    rows["cost"] = cost.to_numpy()
    rows["label"] = _labels(rows)
    order = rows.sort_values(["cost", "label", "n"], na_position="last").index.to_numpy()
    return Cube(rows.loc[order].reset_index(drop=True), table.to_numpy()[order], [str(p) for p in table.columns])


def _labels(rows: pd.DataFrame) -> pd.Series:
    label = rows["approach"] + " / " + rows["sampling"] + " / " + rows["vote"]
    if rows["prm"].nunique() > 1:
        label = label + " · " + rows["prm"]
    if rows["aggregation"].nunique() > 1:
        label = label + " · " + rows["aggregation"]
    return label


def budgets(cube: Cube) -> list[tuple[str, float, np.ndarray]]:
    """(budget type, budget, mask of cube rows within it): every n, and token budgets at powers of two."""
    out = [("n", float(n), (cube.rows["n"] == n).to_numpy()) for n in sorted(cube.rows["n"].unique())]
    cost = cube.rows["cost"].to_numpy(dtype=float)
    if np.isfinite(cost).any():
        budget = 2 ** math.floor(math.log2(max(np.nanmin(cost), 1)))
        while budget <= 2 ** math.ceil(math.log2(max(np.nanmax(cost), 1))):
            out.append(("tokens", float(budget), np.nan_to_num(cost, nan=np.inf) <= budget))
            budget *= 2
    return [b for b in out if b[2].any()]


def best_of_n_rows(cube: Cube, ref: Reference, prm: str, baseline: str | None) -> dict[str, np.ndarray]:
    """Cube rows of the Best-of-N baseline per vote (majority, weighted), in increasing n: the reference
    run's approach if it is Best-of-N, at the baseline sampling (default: the reference run's)."""
    rows = cube.rows
    bon = rows[rows["method"] == BEST_OF_N]
    approach = ref.approach if (bon["approach"] == ref.approach).any() else next(iter(sorted(bon["approach"])), None)
    sampling = baseline if (bon["sampling"] == baseline).any() else ref.sampling
    pick = bon[(bon["approach"] == approach) & (bon["sampling"] == sampling) & (bon["prm"] == prm)]
    return {vote: pick[pick["vote"] == vote].sort_values("n").index.to_numpy() for vote in ("majority", "weighted")}


#: `evaluation.optimal` keys -> `sal optimal` flags (difficulty_run is {approach, sampling})
FLAGS = {"bins": "--bins", "repeats": "--repeats", "seed": "--seed", "predicted_prm": "--predicted-prm"}


def optimal_flags(evaluation: Mapping[str, Any], baseline: str | None) -> str:
    """`sal optimal`'s flags for the config's `evaluation` block (the schema has checked the values)."""
    block = evaluation.get("optimal") or {}
    flags = [f"{flag} {block[key]}" for key, flag in FLAGS.items() if block.get(key) is not None]
    run = block.get("difficulty_run") or {}
    flags += [f"--difficulty-{key} {run[key]}" for key in ("approach", "sampling") if run.get(key)]
    if baseline:
        flags.append(f"--baseline-sampling {baseline}")
    return " ".join(flags)


#: folds of a bin: (bin, its problem count, settings) -> [repeats, problems], True in fold A
FoldMaker = Callable[[int, int, "OptimalSettings"], np.ndarray]


def seeded_folds(level: int, size: int, settings: OptimalSettings) -> np.ndarray:
    """Random halves, seeded by the setting's seed and the bin: the same split at every budget."""
    return random_folds(size, settings.repeats, np.random.default_rng([settings.seed, level]))


def analyse(
    credit: pd.DataFrame, settings: OptimalSettings, folds: FoldMaker = seeded_folds
) -> tuple[pd.DataFrame, pd.DataFrame, Reference]:
    """The compute-optimal table of one model's credit, the per-strategy curves over all problems, and
    the reference run. Raises ConfigError (one line naming the setting) when the analysis cannot run.
    `folds` is for tests, which inject the split."""
    ref = reference_run(credit, settings.difficulty_approach, settings.difficulty_sampling, settings.baseline_sampling)
    prm = settings.predicted_prm or sorted(credit["prm"].unique())[0]
    values = problem_values(credit, ref, prm)
    cube = strategy_cube(credit, ref.scoring_seeds)
    values = values.reindex(cube.problems)
    if len(cube.problems) < MIN_BIN * settings.bins:
        raise ConfigError(
            f"evaluation.optimal.bins: {len(cube.problems)} problems are too few for {settings.bins} difficulty "
            f"bins of at least {MIN_BIN} (two folds of two); no compute-optimal rows"
        )
    bon = best_of_n_rows(cube, ref, prm, settings.baseline_sampling)
    rows = []
    for kind in KINDS:
        bins = difficulty_bins(values[kind].to_numpy(dtype=float), settings.bins)
        for budget_type, budget, mask in budgets(cube):
            head = {"difficulty": kind, "budget_type": budget_type, "budget": budget}
            rows += budget_rows(cube, mask, bins, head, bon, settings, folds)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if not c.startswith(("difficulty_", "scoring"))])
    table = table.assign(
        difficulty_run=ref.label,
        difficulty_prm=prm,
        difficulty_samples=ref.samples,
        difficulty_held_out=ref.held_out,
        scoring_seeds=",".join(ref.scoring_seeds),
    )
    return table[list(COLUMNS)], strategy_curves(cube), ref


def strategy_curves(cube: Cube) -> pd.DataFrame:
    """Accuracy over all problems of every strategy at every n (the figure's thin lines)."""
    return cube.rows.assign(accuracy=cube.credit.mean(1))


def budget_rows(
    cube: Cube,
    mask: np.ndarray,
    bins: np.ndarray,
    head: dict,
    bon: dict[str, np.ndarray],
    settings: OptimalSettings,
    folds: FoldMaker = seeded_folds,
) -> list[dict]:
    """One row per difficulty bin at one budget, then the row `all` that pools the bins' choices."""
    candidates = np.nonzero(mask)[0]
    credit = cube.credit[candidates]
    rows, pooled, pooled_in, pooled_idx = [], [], [], []
    for level in range(1, settings.bins + 1):
        idx = np.nonzero(bins == level)[0]
        row = {**head, "bin": str(level), "num_problems": len(idx)}
        if len(idx) < MIN_BIN:
            rows.append({**row, "note": f"fewer than {MIN_BIN} problems: no two folds"} if len(idx) else row)
            continue
        cv = cross_validate(credit[:, idx], folds(level, len(idx), settings))
        best_in, acc_in = in_sample(credit[:, idx])
        top, share = most_chosen(cv.chosen)
        row["strategy"] = _name(cube, candidates[top])
        row["chosen_share"] = share
        row.update(_summary(cv, settings, level))
        row.update(in_sample_strategy=_name(cube, candidates[best_in]), in_sample_accuracy=acc_in)
        row.update(compare(cube, bon, idx, row["cv_accuracy"], head))
        rows.append(row)
        pooled.append(cv)
        pooled_in.append(credit[best_in, idx])
        pooled_idx.append(idx)
    if pooled:
        idx = np.concatenate(pooled_idx)
        row = {**head, "bin": "all", "num_problems": len(idx), "strategy": "per bin"}
        every = CrossValidated(*(np.concatenate([cv.out_of_fold for cv in pooled], axis=1), None))
        row.update(_summary(every, settings, 0))
        row.update(in_sample_strategy="per bin", in_sample_accuracy=float(np.concatenate(pooled_in).mean()))
        row.update(compare(cube, bon, idx, row["cv_accuracy"], head))
        rows.append(row)
    return rows


def _name(cube: Cube, row: int) -> str:
    return f"{cube.labels[row]} @ n={cube.ns[row]}"


def _summary(cv: CrossValidated, settings: OptimalSettings, level: int) -> dict:
    """Cross-validated accuracy, its bootstrap interval over problems, the spread over repeats."""
    rng = np.random.default_rng([settings.seed, 1000 + level])
    low, high = bootstrap_interval(cv.per_problem(), rng, settings.bootstrap)
    return {
        "cv_accuracy": cv.accuracy(),
        "ci_low": low,
        "ci_high": high,
        "cv_spread": cv.spread(),
        "repeats": len(cv.out_of_fold),
    }


def compare(cube: Cube, bon: dict[str, np.ndarray], idx: np.ndarray, target: float, head: dict) -> dict:
    """Best-of-N (majority, weighted) on the same problems at the same budget, and the smallest budget of
    the grid at which it reaches `target` (no interpolation), as a multiple of this budget."""
    out = {}
    for vote, rows in bon.items():
        if not len(rows):  # no Best-of-N run in the grid to compare with
            out.update({f"bon_{vote}": np.nan, f"{vote}_reaches_at": np.nan, f"{vote}_less_compute": np.nan})
            continue
        accuracy = cube.credit[rows][:, idx].mean(1)
        spend = (cube.ns if head["budget_type"] == "n" else cube.costs)[rows].astype(float)
        within = np.nonzero(spend <= head["budget"])[0]
        out[f"bon_{vote}"] = float(accuracy[within[-1]]) if len(within) else np.nan
        reached = np.nonzero(accuracy >= target - 1e-9)[0]
        out[f"{vote}_reaches_at"] = float(spend[reached[0]]) if len(reached) else np.nan
        out[f"{vote}_less_compute"] = (
            round(float(spend[reached[0]]) / head["budget"], 3) if len(reached) else NOT_REACHED
        )
    return out
