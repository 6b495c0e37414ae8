"""Per-problem credit of one run: what the metrics average, kept problem by problem.

`sal evaluate --credit FILE` writes, for every problem, n and vote, the credit the metrics file averages
(same grading, same subsamples: the seed's first draw) and the tokens charged for it, plus what
difficulty is estimated from (samples, correct samples, mean PRM score). The compute-optimal
analysis (sal_core.evaluation.optimal) needs credit per problem to choose strategies on one half of
a difficulty bin's problems and score them on the other. It is its own file, written by its own
rule (`credit`), so adding it to a finished grid reruns no `evaluate` job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sal_core.evaluation.evaluate import RUN_KEYS, EvalOptions, RunCredit, grade_frame, run_credit
from sal_core.evaluation.sal_protocol import sal_credit
from sal_core.tables import concat_runs, read_checked

#: columns of a credit file, one row per problem x n x vote (run keys first)
COLUMNS = (
    *RUN_KEYS,
    "aggregation",
    "protocol",
    "problem_id",
    "n",
    "vote",
    "credit",
    "compute_tokens",
    "mean_tokens",
    "num_samples",
    "num_correct",
    "mean_score",
)


def default_credit(frame: pd.DataFrame, path: Path, options: EvalOptions, keys: Mapping[str, str]) -> RunCredit:
    """The default protocol's per-problem credit, with the metrics' own subsamples."""
    graded = grade_frame(frame, path, options)
    return run_credit(graded, keys, options, np.random.default_rng(options.seed))


def credit_frame(
    credit: RunCredit, problem_ids: Sequence[str], keys: Mapping[str, str], options: EvalOptions
) -> pd.DataFrame:
    """The long table (COLUMNS) of one run's credit."""
    num_labels, num_problems = credit.matrix.shape
    tokens = credit.spent.get("compute_tokens")
    if tokens is None or not np.isfinite(tokens).any():
        tokens = credit.spent["mean_tokens"]  # results older than the spend counts
    table = pd.DataFrame(
        {
            "problem_id": np.tile(np.asarray(problem_ids, dtype=object), num_labels),
            "n": np.repeat([n for n, _ in credit.labels], num_problems),
            "vote": np.repeat([vote for _, vote in credit.labels], num_problems),
            "credit": credit.matrix.ravel(),
            "compute_tokens": np.asarray(tokens, dtype=float).ravel(),
            "mean_tokens": np.asarray(credit.spent["mean_tokens"], dtype=float).ravel(),
            "num_samples": np.tile(credit.num_samples, num_labels),
            "num_correct": np.tile(credit.num_correct, num_labels),
            "mean_score": np.tile(credit.mean_score, num_labels),
        }
    )
    for key in reversed(RUN_KEYS):
        table.insert(0, key, str(keys[key]))
    table.insert(len(RUN_KEYS), "aggregation", options.aggregation)
    table.insert(len(RUN_KEYS) + 1, "protocol", options.protocol)
    return table[list(COLUMNS)]


def frame_credit(frame: pd.DataFrame, path: Path, keys: Mapping[str, str], options: EvalOptions) -> pd.DataFrame:
    """One merged table's credit under the options' protocol."""
    if options.protocol == "sal":
        credit = sal_credit(frame, dict(keys), options, str(path))
    else:
        credit = default_credit(frame, path, options, keys)
    return credit_frame(credit, frame["problem_id"].astype(str).tolist(), keys, options)


def read_credit(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate credit files; a missing or corrupt one raises ShardError naming it."""
    return concat_runs([read_checked(path, COLUMNS, "credit").select(list(COLUMNS)) for path in paths], "credit")
