"""What a run spent per problem at each evaluated n: the tokens its policy generated and the tokens
its PRMs read, so accuracy is set against all the compute a method used, not only the tokens of
the completions it returned.

`sal generate` records, per problem, `generated_tokens` (every sampled step, pruned beams, dropped
DVTS candidates and lookahead rollouts included) and `prm_tokens` (every token the in-search PRM
read), and for DVTS `subtree_tokens` / `subtree_prm_tokens` (one entry per subtree); `sal score`
adds the scoring PRM's `score_prm_tokens` and `score_completion_prm_tokens` (0 when it reused the
search's scores). How each method is charged at n:

- Best-of-N: the generated and scoring-PRM tokens of the n completions used (the default protocol's
  random subsamples: n times the per-completion mean; `--protocol sal`: the first n);
- DVTS: the k = n / beam_width subtrees used, all their candidates and PRM reads (the default: k times
  the mean over all subtrees, finished or not; `sal`: the first k), plus the scoring PRM's reads of
  their completions;
- beam search and particle filtering: the whole run (one run per n; its beams or particles cannot be
  told apart), every sweep and resampled-away particle included, plus the scoring PRM's reads.

Files without these columns (older runs, hand-made jsonl) give NaN, and figures fall back to the
returned completions' tokens (`mean_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sal_core.constants import ONE_RUN_PER_N

#: metric columns, per problem and n: generated, PRM-read, and their sum (what accuracy_vs_tokens plots)
SPEND_COLUMNS = ("generated_tokens", "prm_tokens", "compute_tokens")


def _lists(frame: pd.DataFrame, column: str) -> list[np.ndarray | None]:
    if column not in frame.columns:
        return [None] * len(frame)
    return [None if v is None else np.asarray(v, dtype=float) for v in frame[column]]


def _scalars(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


@dataclass
class Spend:
    """Per-problem spend read from a merged run (NaN / None where the file does not say)."""

    completion: list[np.ndarray | None]
    completion_prm: list[np.ndarray | None]
    groups: list[np.ndarray | None]
    generated: np.ndarray
    prm: np.ndarray
    score_prm: np.ndarray
    subtree: list[np.ndarray | None]
    subtree_prm: list[np.ndarray | None]

    @classmethod
    def read(cls, frame: pd.DataFrame) -> Spend:
        return cls(
            completion=_lists(frame, "completion_tokens"),
            completion_prm=_lists(frame, "score_completion_prm_tokens"),
            groups=_lists(frame, "groups"),
            generated=_scalars(frame, "generated_tokens"),
            prm=_scalars(frame, "prm_tokens"),
            score_prm=_scalars(frame, "score_prm_tokens"),
            subtree=_lists(frame, "subtree_tokens"),
            subtree_prm=_lists(frame, "subtree_prm_tokens"),
        )

    def at(self, method: str, n: int, width: int, first_n: bool) -> tuple[np.ndarray, np.ndarray]:
        """(generated, PRM-read) tokens per problem when the run is evaluated at n."""
        if method in ONE_RUN_PER_N:
            return self.generated, self.prm + self.score_prm
        if method == "dvts":
            return self._subtrees(max(n // max(width, 1), 1), first_n)
        return self._completions(n, first_n)

    def _completions(self, n: int, first_n: bool) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([_take(c, n, first_n) for c in self.completion]),
            np.array([_take(c, n, first_n) for c in self.completion_prm]),
        )

    def _subtrees(self, k: int, first_n: bool) -> tuple[np.ndarray, np.ndarray]:
        generated = np.array([_take(s, k, first_n) for s in self.subtree])
        in_search = np.array([_take(s, k, first_n) for s in self.subtree_prm])
        scoring = np.array([self._scoring_share(p, k, first_n) for p in range(len(self.subtree))])
        return generated, in_search + scoring

    def _scoring_share(self, p: int, k: int, first_n: bool) -> float:
        """The scoring PRM's reads of the completions of k subtrees (all of them are scored once)."""
        subtrees, reads, groups = self.subtree[p], self.completion_prm[p], self.groups[p]
        if subtrees is None or reads is None or groups is None or len(subtrees) == 0:
            return np.nan
        if first_n:
            return float(reads[groups < k].sum())
        return float(reads.sum()) * min(k, len(subtrees)) / len(subtrees)


def _take(values: np.ndarray | None, count: int, first: bool) -> float:
    """The total of `count` of `values`: the first ones, or in expectation over a random choice."""
    if values is None or len(values) == 0:
        return np.nan
    count = min(count, len(values))
    return float(values[:count].sum()) if first else float(values.mean()) * count


def spend_columns(generated: np.ndarray, prm: np.ndarray) -> dict[str, np.ndarray]:
    """The SPEND_COLUMNS of one evaluated n, per problem."""
    return dict(zip(SPEND_COLUMNS, (generated, prm, generated + prm), strict=True))
