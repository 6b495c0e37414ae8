"""Difficulty bins per model, from its own samples: oracle (pass@1) and predicted (a PRM's mean score).

Difficulty is the model's, not the dataset's label: a problem is easy for a model that often solves it
(Snell et al. 2024, arXiv 2408.03314, §3.2: quantiles of pass@1, and of a verifier's mean final score).
- oracle: pass@1 = correct samples / samples of one Best-of-N run (the reference run);
- predicted: the mean of a PRM's final (aggregated) scores over the same samples, no gold answer needed.
Bins are quantiles of that value, as search-and-learn's `compute_level()` (src/sal/utils/math.py) forms
its levels: thresholds at the 1/B, 2/B, ... quantiles; bin 1 is the easiest (highest value), bin B the
hardest; a value equal to a threshold goes to the easier bin (its `x < threshold` tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sal_core.errors import ConfigError
from sal_core.evaluation.levels import natural_key

BEST_OF_N = "best_of_n"


@dataclass(frozen=True)
class Reference:
    """The run difficulty is estimated from, and the seeds it uses and leaves to the strategies."""

    approach: str
    sampling: str
    difficulty_seed: str
    scoring_seeds: tuple[str, ...]  # the seeds strategies are scored on
    held_out: bool  # False: difficulty comes from the very samples the strategies are scored on
    samples: int  # samples per problem the estimate rests on (the smallest count over problems)

    @property
    def label(self) -> str:
        return f"{self.approach}/{self.sampling}/seed-{self.difficulty_seed}"


def reference_run(
    credit: pd.DataFrame, approach: str | None, sampling: str | None, baseline: str | None = None
) -> Reference:
    """The run to estimate pass@1 from: the one named, else the Best-of-N run with the most samples
    (equal counts: the baseline sampling if among them, else the first sampling by name). One seed,
    the smallest, estimates difficulty; the run's other seeds are what strategies are scored on."""
    runs = credit.groupby(["approach", "method", "sampling"], sort=False)["num_samples"].max().reset_index()
    if approach or sampling:
        chosen = runs[
            (runs["approach"] == approach if approach else True) & (runs["sampling"] == sampling if sampling else True)
        ]
        setting = "evaluation.optimal.difficulty_run"
    else:
        chosen = runs[runs["method"] == BEST_OF_N]
        setting = "evaluation.optimal.difficulty_run (no Best-of-N run in the grid)"
    if chosen.empty:
        raise ConfigError(f"{setting}: no run to estimate pass@1 from (runs: {_names(runs)})")
    most = chosen[chosen["num_samples"] == chosen["num_samples"].max()]
    samplings = sorted(most["sampling"], key=natural_key)
    pick = baseline if baseline in samplings else samplings[0]
    row = most[most["sampling"] == pick].sort_values("approach", key=lambda s: s.map(natural_key)).iloc[0]
    part = credit[(credit["approach"] == row["approach"]) & (credit["sampling"] == pick)]
    seeds = sorted(part["seed"].unique(), key=natural_key)
    others = set(credit["seed"].unique()) - {seeds[0]}
    scoring = tuple(sorted(others, key=natural_key)) or (seeds[0],)
    first = part[part["seed"] == seeds[0]]
    return Reference(row["approach"], pick, seeds[0], scoring, bool(others), int(first["num_samples"].min()))


def _names(runs: pd.DataFrame) -> str:
    return ", ".join(f"{r.approach}/{r.sampling}" for r in runs.itertuples()) or "none"


def problem_values(credit: pd.DataFrame, ref: Reference, prm: str) -> pd.DataFrame:
    """Per problem of the reference run's difficulty seed: pass@1 and the PRM `prm`'s mean final score."""
    part = credit[
        (credit["approach"] == ref.approach)
        & (credit["sampling"] == ref.sampling)
        & (credit["seed"] == ref.difficulty_seed)
    ]
    per_problem = part.drop_duplicates(["problem_id", "prm"]).copy()
    per_problem["pass@1"] = per_problem["num_correct"] / per_problem["num_samples"].clip(lower=1)
    oracle = per_problem.drop_duplicates("problem_id").set_index("problem_id")["pass@1"]
    scored = per_problem[per_problem["prm"] == prm].set_index("problem_id")["mean_score"]
    if scored.empty or not np.isfinite(scored.to_numpy(dtype=float)).any():
        prms = ", ".join(sorted(per_problem["prm"].unique()))
        raise ConfigError(
            f"evaluation.optimal.predicted_prm: {prm!r} scored nothing in {ref.label} (its scoring PRMs: {prms})"
        )
    return pd.DataFrame({"oracle": oracle, "predicted": scored.reindex(oracle.index)})


def difficulty_bins(values: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin 1 (easiest: highest values) to `num_bins` (hardest) by quantile thresholds; a value equal to
    a threshold falls in the easier bin, as in search-and-learn's compute_level()."""
    values = np.asarray(values, dtype=float)
    thresholds = np.quantile(values, np.arange(1, num_bins) / num_bins)
    passed = (values[:, None] >= thresholds[None, :]).sum(1)
    return num_bins - passed
