"""Choosing a strategy per difficulty bin without scoring it on the problems it was chosen on.

Two-fold cross-validation: a bin's problems are split in halves A and B; the strategy with the best
mean credit on A is scored on B and the best on B is scored on A, so every problem gets an out-of-fold
credit. Small bins make one split noisy, so the split is repeated with seeded random halves and the
spread between repeats is reported. The in-sample choice (best on all of the bin, scored there) is
computed beside it: its excess over the cross-validated accuracy is the optimism of choosing and
reporting on the same problems. Ties between strategies go to the earlier row: callers order rows
cheapest first, then by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: fewest problems a bin needs: two folds of two
MIN_BIN = 4


@dataclass
class CrossValidated:
    """Out-of-fold credit [repeats, problems] and the strategy chosen on each fold [repeats, 2] (A, B;
    None where bins are pooled)."""

    out_of_fold: np.ndarray
    chosen: np.ndarray | None

    def accuracy(self) -> float:
        return float(self.out_of_fold.mean())

    def spread(self) -> float:
        """Standard deviation over repeats of the bin's out-of-fold accuracy."""
        return float(self.out_of_fold.mean(1).std()) if len(self.out_of_fold) > 1 else 0.0

    def per_problem(self) -> np.ndarray:
        return self.out_of_fold.mean(0)


def random_folds(num_problems: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """[repeats, problems] booleans, True in fold A: a random half (the smaller half when odd)."""
    folds = np.zeros((repeats, num_problems), dtype=bool)
    for r in range(repeats):
        folds[r, rng.permutation(num_problems)[: num_problems // 2]] = True
    return folds


def cross_validate(credit: np.ndarray, folds: np.ndarray) -> CrossValidated:
    """Choose on one fold, score on the other, both ways, for each repeat.

    `credit` is [strategies, problems]; `folds` is [repeats, problems] with True in fold A.
    """
    fold_a = folds.astype(float)
    fold_b = 1.0 - fold_a
    mean_a = credit @ fold_a.T / np.maximum(fold_a.sum(1), 1)  # [strategies, repeats]
    mean_b = credit @ fold_b.T / np.maximum(fold_b.sum(1), 1)
    best_a = mean_a.argmax(0)  # first maximum: the cheaper or earlier-named strategy wins ties
    best_b = mean_b.argmax(0)
    # scored on the fold it was not chosen on
    out_of_fold = np.where(folds, credit[best_b], credit[best_a])
    return CrossValidated(out_of_fold, np.stack([best_a, best_b], axis=1))


def in_sample(credit: np.ndarray) -> tuple[int, float]:
    """The strategy best on all problems and its accuracy on them (optimistic by construction)."""
    means = credit.mean(1)
    best = int(means.argmax())
    return best, float(means[best])


def most_chosen(chosen: np.ndarray) -> tuple[int, float]:
    """The strategy chosen most often over all folds and repeats, and its share of the choices."""
    values, counts = np.unique(chosen.ravel(), return_counts=True)
    top = int(counts.argmax())
    return int(values[top]), float(counts[top] / chosen.size)


def bootstrap_interval(values: np.ndarray, rng: np.random.Generator, resamples: int = 2000) -> tuple[float, float]:
    """95% percentile bootstrap interval over problems of the mean of `values`."""
    if len(values) == 0:
        return np.nan, np.nan
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    low, high = np.percentile(values[picks].mean(1), [2.5, 97.5])
    return float(low), float(high)
