"""All runs' metrics in one accuracy table (mean over seeds with a 95% CI), and the compute-optimal table.

Seeds of one configuration are pooled: with two or more seeds the interval is a Student-t
interval of the seed means; with one seed it is that run's own bootstrap interval over problems.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from sal_core.errors import ConfigError, ShardError
from sal_core.evaluation.compute import SPEND_COLUMNS
from sal_core.tables import concat_runs, read_checked, write_text_atomic

CONFIG_KEYS = ["dataset", "model", "approach", "method", "sampling", "prm", "aggregation", "n", "vote", "level"]
NEEDED = [*CONFIG_KEYS, "seed", "accuracy", "ci_low", "ci_high", "mean_tokens", "timeouts"]
#: token counts of everything a run spent (sal_core.evaluation.compute); NaN in metrics files older than them
OPTIONAL = list(SPEND_COLUMNS)
Z975 = 1.959964  # two-sided 95% normal quantile
#: accuracy under each grader of `evaluation.graders` (accuracy_default, accuracy_sal, ...), when several
GRADER_PREFIX = "accuracy_"


def read_metrics(paths: Sequence[str | Path], progress: bool = True) -> pd.DataFrame:
    """Concatenate metrics files; a missing or corrupt one raises ShardError naming it."""
    tables = []
    for path in tqdm(paths, desc="reading metrics", unit="file", disable=not progress):
        table = read_checked(path, NEEDED, "metrics")
        for column in OPTIONAL:
            if column not in table.column_names:
                table = table.append_column(column, pa.array([None] * table.num_rows, pa.float64()))
        columns = [*NEEDED, *OPTIONAL, *[c for c in table.column_names if c.startswith(GRADER_PREFIX)]]
        tables.append(table.select(columns).cast(pa.schema([(c, table.schema.field(c).type) for c in columns])))
    return concat_runs(tables, "metrics")


def accuracy_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (run keys but seed, n, vote, level): seed mean, std, 95% CI, seed count."""
    dup = metrics.duplicated([*CONFIG_KEYS, "seed"])
    if dup.any():
        row = metrics[dup].iloc[0]
        raise ShardError(f"the same run appears twice: {', '.join(f'{k}={row[k]}' for k in [*CONFIG_KEYS, 'seed'])}")
    # a run's standard error from its (bootstrap) 95% interval
    metrics = metrics.assign(run_se=(metrics["ci_high"] - metrics["ci_low"]) / (2 * Z975))
    grouped = metrics.groupby(CONFIG_KEYS, sort=True, dropna=False)
    table = grouped.agg(
        accuracy=("accuracy", "mean"),
        std=("accuracy", "std"),
        num_seeds=("seed", "nunique"),
        run_ci_low=("ci_low", "first"),
        run_ci_high=("ci_high", "first"),
        run_var=("run_se", lambda se: float(np.mean(np.square(se)))),
        mean_tokens=("mean_tokens", "mean"),
        **{column: (column, "mean") for column in OPTIONAL},
        **{column: (column, "mean") for column in metrics.columns if column.startswith(GRADER_PREFIX)},
        timeouts=("timeouts", "sum"),
    ).reset_index()
    # Two sources of uncertainty: which problems were drawn (each run's bootstrap interval; the
    # seeds share the problems, so averaging seeds does not shrink it) and which samples each seed
    # drew (the spread between seeds, shrinking with their number). A t-interval over 2-5 seeds
    # alone ignores the first and is uselessly wide (t = 12.7 at 2 seeds) or zero when seeds agree.
    between = table["std"].fillna(0.0) ** 2 / table["num_seeds"]
    half = Z975 * np.sqrt(table["run_var"] + between)
    many = table["num_seeds"] > 1
    table["ci_low"] = np.clip(np.where(many, table["accuracy"] - half, table["run_ci_low"]), 0.0, 1.0)
    table["ci_high"] = np.clip(np.where(many, table["accuracy"] + half, table["run_ci_high"]), 0.0, 1.0)
    table["std"] = table["std"].fillna(0.0)
    return table.drop(columns=["run_ci_low", "run_ci_high", "run_var"])


def _label(row: pd.Series) -> str:
    return f"{row['approach']} / {row['sampling']} / {row['vote']}"


def budget_tokens(part: pd.DataFrame) -> str:
    """The token count budgets are measured in: all the compute (`compute_tokens`) where the runs
    recorded it, else the returned completions' tokens (`mean_tokens`) for older results."""
    return "compute_tokens" if "compute_tokens" in part and part["compute_tokens"].notna().any() else "mean_tokens"


def _budgets(part: pd.DataFrame) -> list[tuple[str, float, pd.DataFrame]]:
    """(kind, budget, configurations within it): every n, and token budgets at powers of two."""
    budgets = [("n", float(n), part[part["n"] == n]) for n in sorted(part["n"].unique())]
    column = budget_tokens(part)
    tokens = part[column].dropna()
    if len(tokens):
        budget = 2 ** math.floor(math.log2(max(tokens.min(), 1)))
        high = 2 ** math.ceil(math.log2(max(tokens.max(), 1)))
        while budget <= high:
            budgets.append((column, float(budget), part[part[column] <= budget]))
            budget *= 2
    return budgets


def compute_optimal(table: pd.DataFrame) -> pd.DataFrame:
    """For each model, level and budget, the best approach + sampling + vote (pass@k excluded: it is an oracle).

    Budgets: every n (configurations at exactly that n) and token budgets at powers of two
    (configurations whose tokens per problem fit the budget: all generated and PRM-read tokens where
    recorded, `budget_tokens`). Ties: higher accuracy, then fewer tokens, then name order.
    """
    real = table[table["vote"] != "pass@k"]
    rows = []
    for (dataset, model, level), part in real.groupby(["dataset", "model", "level"], sort=True):
        cost = budget_tokens(part)
        for kind, budget, options in _budgets(part):
            if options.empty:
                continue
            ranked = options.assign(_label=options.apply(_label, axis=1)).sort_values(
                ["accuracy", cost, "_label"], ascending=[False, True, True]
            )
            rows.append(_optimal_row(dataset, model, level, kind, budget, ranked))
    return pd.DataFrame(rows)


def _optimal_row(dataset: str, model: str, level: str, kind: str, budget: float, ranked: pd.DataFrame) -> dict:
    best = ranked.iloc[0]
    runner = ranked.iloc[1] if len(ranked) > 1 else None
    keep = ("approach", "method", "sampling", "prm", "aggregation", "vote", "n", "accuracy", "ci_low", "ci_high")
    return {
        "dataset": dataset,
        "model": model,
        "level": level,
        "budget_type": "n" if kind == "n" else "tokens",
        "budget": budget,
        "budget_tokens": "" if kind == "n" else kind,
        **{key: best[key] for key in keep},
        **{key: best.get(key, math.nan) for key in ("mean_tokens", *OPTIONAL)},
        "num_seeds": best["num_seeds"],
        "runner_up": runner["_label"] if runner is not None else "",
        "runner_up_accuracy": runner["accuracy"] if runner is not None else math.nan,
    }


def read_path_list(list_file: str | Path) -> list[str]:
    """The paths of a list file, one per line (how the workflow hands over thousands of paths)."""
    list_file = Path(list_file)
    if not list_file.exists():
        raise ConfigError(f"--metrics-list: {list_file} not found")
    return [line.strip() for line in list_file.read_text().splitlines() if line.strip()]


def aggregate_runs(
    paths: Sequence[str | Path], out: str | Path, optimal_out: str | Path | None, progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """`sal aggregate`: the accuracy table of all runs' metrics (and the compute-optimal table),
    written atomically as CSV."""
    if not paths:
        raise ConfigError("give metrics files with --metrics or --metrics-list")
    table = accuracy_table(read_metrics(paths, progress=progress))
    write_text_atomic(table.to_csv(index=False), out)
    best = None
    if optimal_out is not None:
        best = compute_optimal(table)
        write_text_atomic(best.to_csv(index=False), optimal_out)
    return table, best
