"""Particle filtering's resampling as statistics (sal_core/search/resampling.py): over many seeded draws
the counts follow the probabilities (a chi-square bound that wrong schemes fail), systematic
resampling gives each particle floor or ceil of k p copies, and weights are its_hub's softmax of
logits with the weight temperature applied."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sal_core.search.resampling import (
    choose,
    draw_seed,
    effective_sample_size,
    log_weight,
    multinomial,
    probabilities,
    resample,
    systematic,
)

PROBS = [0.4, 0.3, 0.2, 0.08, 0.02]
DRAWS, K = 2000, 10
#: the chi-square quantile at 1 - 1e-4 with 4 degrees of freedom: a right scheme fails 1 time in 10,000
CRITICAL = 23.51


def chi_square(counts: np.ndarray, probs: list[float]) -> float:
    expected = np.asarray(probs) * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


def counts_of(scheme, probs: list[float] = PROBS, k: int = K) -> np.ndarray:
    """How often each index was drawn over DRAWS seeded draws of k."""
    counts = np.zeros(len(probs))
    for d in range(DRAWS):
        for i in scheme(probs, k, random.Random(draw_seed(0, d, 0, 0, 0))):
            counts[i] += 1
    return counts


def uniform(probs, k, rng):
    """Wrong: ignores the weights."""
    return [rng.randrange(len(probs)) for _ in range(k)]


def no_offset(probs, k, rng):
    """Wrong: systematic positions i / k without the random offset."""
    cumulative = np.cumsum(probs)
    return [int(np.searchsorted(cumulative, i / k, side="right")) for i in range(k)]


def squared(probs, k, rng):
    """Wrong: draws by p^2."""
    return multinomial(np.square(probs) / np.sum(np.square(probs)), k, rng)


@pytest.mark.parametrize("scheme", [multinomial, systematic])
def test_draw_counts_follow_the_probabilities(scheme):
    assert chi_square(counts_of(scheme), PROBS) < CRITICAL


@pytest.mark.parametrize("wrong", [uniform, no_offset, squared])
def test_the_bound_fails_a_wrong_scheme(wrong):
    assert chi_square(counts_of(wrong), PROBS) > 10 * CRITICAL


def test_systematic_gives_each_particle_floor_or_ceil_of_k_p_copies():
    for d in range(500):
        drawn = systematic(PROBS, K, random.Random(d))
        assert drawn == sorted(drawn)
        for i, p in enumerate(PROBS):
            assert math.floor(K * p + 1e-9) <= drawn.count(i) <= math.ceil(K * p - 1e-9)


def test_multinomial_draws_vary_more_than_systematic():
    def spread(scheme) -> float:
        return float(np.var([scheme(PROBS, K, random.Random(d)).count(0) for d in range(DRAWS)]))

    assert spread(systematic) < 0.5 * spread(multinomial)
    assert spread(multinomial) == pytest.approx(K * 0.4 * 0.6, rel=0.15)  # binomial variance


def test_resample_draws_by_softmax_of_the_log_weights_at_the_weight_temperature():
    log_weights = [log_weight(s) for s in (0.9, 0.7, 0.5, 0.3, 0.1)]
    for temperature in (1.0, 2.0):
        probs = list(probabilities(log_weights, temperature))
        explicit = np.exp(np.asarray(log_weights) / temperature)
        assert probs == pytest.approx(list(explicit / explicit.sum()), rel=1e-12)
        counts = np.zeros(5)
        for d in range(DRAWS):
            drawn, used = resample(log_weights, K, draw_seed(1, d, 0, 0, 0), "multinomial", temperature)
            assert list(used) == probs
            for i in drawn:
                counts[i] += 1
        assert chi_square(counts, probs) < CRITICAL
    # the temperature is applied: the draws at T 2 fail the probabilities at T 1
    assert chi_square(counts, list(probabilities(log_weights, 1.0))) > 10 * CRITICAL


def test_references_and_sample_selection_draw_by_weight():
    log_weights = list(np.log(PROBS))
    counts = np.zeros(5)
    for d in range(DRAWS):
        for i in choose(log_weights, K, draw_seed(2, d, 0, 0, 1)):
            counts[i] += 1
    assert chi_square(counts, PROBS) < CRITICAL


def test_log_weights_are_clipped_logits_and_the_ess_spans_one_to_m():
    assert log_weight(0.5) == 0.0
    assert log_weight(0.9) == pytest.approx(math.log(9))
    assert log_weight(0.0) == pytest.approx(-math.log(1e7 - 1)) and log_weight(1.0) == pytest.approx(-log_weight(0.0))
    assert effective_sample_size([0.25] * 4) == pytest.approx(4.0)
    assert effective_sample_size([1.0, 0.0, 0.0]) == 1.0
    assert 1.0 < effective_sample_size(PROBS) < 5.0
    # max-shifted: huge log weights do not overflow
    assert list(probabilities([1000.0, 1000.0])) == [0.5, 0.5]


def test_draw_seeds_differ_by_row_sweep_step_and_kind():
    seeds = {draw_seed(0, row, sweep, step, kind) for row in range(5) for sweep in range(3) for step in range(5)
             for kind in range(3)}  # fmt: skip
    assert len(seeds) == 5 * 3 * 5 * 3
