"""Accuracy estimators on graded completions, vectorised over problems and subsamples with numpy.

Inputs are padded per-problem arrays: `classes[p, i]` is the answer class of completion i of
problem p (0 = the gold answer's class, i.e. correct; `grading.NO_ANSWER` = -1; `PAD` = -2 past the
problem's last completion), `scores[p, i]` its aggregated PRM score, `groups[p, i]` its subtree.

Ties are scored with fractional credit: when k candidates tie for the win, the vote earns 1/k
for each correct one among them (the expected accuracy of a uniform random tie-break), which is
deterministic and has no seed variance. A completion without an answer never wins while any
completion in the subsample has one; a subsample with no answer at all scores 0.
"""

from __future__ import annotations

import numpy as np

from sal_core.constants import ONE_RUN_PER_N
from sal_core.evaluation.verdicts import PAD

#: the vote column of a method's own choice of answer (particle filtering's selected particle)
SELECTED = "selected"


def subsample_orders(
    groups: np.ndarray, valid: np.ndarray, num_subsamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Random orders [P, K, N] of each problem's completions; a prefix of length n is a subsample of size n.

    Whole groups (DVTS subtrees) come in random order, their members contiguous and shuffled, so a
    prefix of n takes n / group_size whole groups (n < group_size: n members of one random group).
    Padding sorts last. Every prefix is a uniform random subsample (of groups), so one order per
    subsample serves all n.
    """
    num_problems, width = groups.shape
    dense = np.zeros_like(groups)
    for p in range(num_problems):  # group ids -> 0..G-1 per problem
        _, dense[p] = np.unique(groups[p], return_inverse=True)
    group_rank = rng.random((num_problems, num_subsamples, width)).argsort(-1).argsort(-1)
    key = np.take_along_axis(group_rank, np.broadcast_to(dense[:, None, :], group_rank.shape), -1)
    key = key + rng.random(key.shape)
    key[~np.broadcast_to(valid[:, None, :], key.shape)] = np.inf
    return key.argsort(-1, kind="stable")


def _class_credit(totals: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Credit of an argmax over classes (last axis; class 0 correct) with fractional ties."""
    best = np.where(present, totals, -np.inf).max(-1, keepdims=True)
    winners = present & (totals == best)
    count = winners.sum(-1)
    return np.where(count > 0, winners[..., 0] / np.maximum(count, 1), 0.0)


def vote_credit(classes: np.ndarray, scores: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per-subsample credit of each vote; `classes`, `scores` are [..., n] subsamples."""
    shape = classes.shape[:-1]
    flat_classes = classes.reshape(-1, classes.shape[-1])
    flat_scores = scores.reshape(flat_classes.shape)
    rows = np.repeat(np.arange(flat_classes.shape[0]), flat_classes.shape[1])
    answered = flat_classes >= 0
    index = (rows * num_classes + np.where(answered, flat_classes, 0).ravel())[answered.ravel()]
    size = flat_classes.shape[0] * num_classes
    counts = np.bincount(index, minlength=size).reshape(-1, num_classes)
    weights = np.bincount(index, weights=flat_scores.ravel()[answered.ravel()], minlength=size)
    weights = weights.reshape(-1, num_classes)
    present = counts > 0
    majority = _class_credit(counts, present)
    weighted = _class_credit(weights, present)
    masked = np.where(answered, flat_scores, -np.inf)
    top = masked.max(-1, keepdims=True)
    tied = answered & (masked == top)
    naive = (tied & (flat_classes == 0)).sum(-1) / np.maximum(tied.sum(-1), 1)
    return {
        "majority": majority.reshape(shape),
        "naive": naive.reshape(shape),
        "weighted": weighted.reshape(shape),
    }


def subsampled_accuracy(
    classes: np.ndarray, scores: np.ndarray, orders: np.ndarray, n: int, num_classes: int
) -> dict[str, np.ndarray]:
    """Per-problem accuracy [P] of each vote at subsample size n, averaged over the K orders."""
    pick = orders[..., :n]
    sub_classes = np.take_along_axis(np.broadcast_to(classes[:, None, :], orders.shape), pick, -1)
    sub_scores = np.take_along_axis(np.broadcast_to(scores[:, None, :], orders.shape), pick, -1)
    credit = vote_credit(sub_classes, sub_scores, num_classes)
    return {vote: value.mean(-1) for vote, value in credit.items()}


def subsampled_group_accuracy(
    classes: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    valid: np.ndarray,
    orders: np.ndarray,
    num_groups: int,
    num_classes: int,
) -> dict[str, np.ndarray]:
    """Per-problem accuracy [P] of each vote over subsamples of `num_groups` whole groups.

    For DVTS, where n is a budget of n / beam_width subtrees and a subtree returns however many of
    its candidates finished: each order lists groups contiguously in random order, and a subsample
    keeps every finished member of its first `num_groups` groups (the rest is masked as padding).
    """
    shape = orders.shape
    ordered_groups = np.take_along_axis(np.broadcast_to(groups[:, None, :], shape), orders, -1)
    ordered_valid = np.take_along_axis(np.broadcast_to(valid[:, None, :], shape), orders, -1)
    starts = np.ones(shape, bool)
    starts[..., 1:] = ordered_groups[..., 1:] != ordered_groups[..., :-1]
    group_rank = np.cumsum(starts, -1) - 1
    keep = ordered_valid & (group_rank < num_groups)
    sub_classes = np.take_along_axis(np.broadcast_to(classes[:, None, :], shape), orders, -1)
    sub_classes = np.where(keep, sub_classes, PAD)
    sub_scores = np.take_along_axis(np.broadcast_to(scores[:, None, :], shape), orders, -1)
    credit = vote_credit(sub_classes, sub_scores, num_classes)
    return {vote: value.mean(-1) for vote, value in credit.items()}


def group_budgets(run_n: int, group_size: int) -> list[int]:
    """DVTS budgets evaluated: group_size × 1, 2, 4, … up to the run's n, and the run's n."""
    sizes, n = [], group_size
    while n < run_n:
        sizes.append(n)
        n *= 2
    return [*sizes, run_n]


def selected_credit(classes: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Per-problem credit [P] of a method's own choice (particle filtering's selected particle):
    1 when completion `selected[p]` is correct; a problem without a choice (-1) earns 0."""
    rows = np.arange(len(selected))
    chosen = classes[rows, np.clip(selected, 0, classes.shape[1] - 1)]
    return ((selected >= 0) & (chosen == 0)).astype(float)


def pass_at_k(num_correct: np.ndarray, num_samples: np.ndarray, k: int) -> np.ndarray:
    """Unbiased pass@k per problem (Chen et al. 2021): 1 - C(N-c, k) / C(N, k), in its stable product form."""
    out = np.empty(len(num_correct))
    for p, (c, total) in enumerate(zip(num_correct, num_samples, strict=True)):
        k_eff = min(k, total)
        if total - c < k_eff:
            out[p] = 1.0
        else:
            out[p] = 1.0 - np.prod(1.0 - k_eff / np.arange(total - c + 1, total + 1))
    return out


def bootstrap_ci(
    per_problem: np.ndarray, rng: np.random.Generator, resamples: int = 2000, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over problems of the mean of each row of [R, P]; returns (low, high) [R]."""
    num_problems = per_problem.shape[1]
    if num_problems == 0:
        nan = np.full(per_problem.shape[0], np.nan)
        return nan, nan
    counts = rng.multinomial(num_problems, np.full(num_problems, 1.0 / num_problems), size=resamples)
    means = per_problem @ counts.T / num_problems
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=1)
    return low, high


def n_values(num_samples: int, method: str, group_size: int = 1) -> list[int]:
    """Subsample sizes evaluated: powers of two up to N, plus N; beam search and particle filtering
    only their own N (a run per n).

    Grouped runs (DVTS) start at one whole group: a DVTS run of fewer completions than its beam
    width does not exist, so such subsamples are not reported.
    """
    if method in ONE_RUN_PER_N:
        return [num_samples]
    sizes = []
    n = 1
    while n < num_samples:
        if n >= group_size:
            sizes.append(n)
        n *= 2
    sizes.append(num_samples)
    return sizes
