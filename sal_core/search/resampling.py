"""The random part of particle filtering: step scores to log weights, weights to probabilities, and
the draws (resampling, reference particles, the final sample), as its_hub 1.2.0 computes them
(`its_hub/core/algorithms/particle_gibbs.py`: `_inv_sigmoid`, `_softmax`, `_resampling_multinomial`,
`_resampling_systematic`, `_effective_sample_size`).

Every draw comes from its own `random.Random`, seeded by `draw_seed` from the job seed, the dataset
row, the sweep, the step and the kind of draw (each step's requests by `request_seed`, a kind of its
own), so a problem's particles do not depend on the shard it
falls in nor on the other problems. A multinomial draw is Python's `random.choices` (what its_hub
calls on its global generator); a systematic draw takes one uniform from the same generator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from sal_core.search.temperatures import derive_seed

#: the tag of each kind of seed particle filtering derives, the last position of its key: the draw after
#: a step, the references after a sweep, the `sample` choice, and a step's request (the policy's sample)
RESAMPLE, REFERENCE, SELECT, REQUEST = 0, 1, 2, 3
#: its_hub's `_inv_sigmoid` clips scores to [EPS, 1 - EPS] before the logit
EPS = 1e-7


def draw_seed(seed: int, row: int, sweep: int, step: int, kind: int) -> int:
    """The seed of one draw: `kind` RESAMPLE after `step` of `sweep`, REFERENCE at the end of `sweep`
    (step 0), SELECT once after the last sweep (step 0). Its key (seed, row, sweep, step, kind) never
    equals a request's (`request_seed`: one position more, tag REQUEST)."""
    return derive_seed(seed, row, sweep, step, kind)


def request_seed(seed: int, row: int, sweep: int, slot: int, step: int) -> int:
    """The seed of slot `slot`'s request at `step` of `sweep`. Tagged REQUEST: without a tag its key
    (seed, row, sweep, slot, step) equalled a draw's at slot 0 and RESAMPLE (0), so slot 0's first step
    and the draw after it shared one seed (issue 27)."""
    return derive_seed(seed, row, sweep, slot, step, REQUEST)


def log_weight(score: float) -> float:
    """A particle's log weight: the logit of its (aggregated) step score, clipped as its_hub does."""
    x = np.clip(score, EPS, 1 - EPS)
    return float(np.log(x / (1 - x)))


def probabilities(log_weights: Sequence[float], temperature: float = 1.0) -> np.ndarray:
    """softmax(log_weights / temperature), computed as its_hub's `_softmax` (max-shifted)."""
    x = np.asarray(log_weights, dtype=np.float64) * (1 / temperature)
    shifted = x - np.max(x)
    return np.exp(shifted) / np.sum(np.exp(shifted))


def effective_sample_size(probs: Sequence[float]) -> float:
    """1 / sum(p^2): how many equally weighted particles the weights are worth."""
    p = np.asarray(probs, dtype=np.float64)
    return float(1.0 / np.sum(p**2))


def multinomial(probs: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """k indices drawn independently with replacement (its_hub: `random.choices(particles, weights, k)`)."""
    return rng.choices(range(len(probs)), weights=list(probs), k=k)


def systematic(probs: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """k indices by systematic resampling: one uniform u, positions (i + u) / k walked along the
    cumulative weights (its_hub's `_resampling_systematic`; a position past the last cumulative sum,
    where float error leaves it below 1, takes the last particle instead of failing)."""
    positions = (np.arange(k) + rng.random()) / k
    cumulative = np.cumsum(probs)
    indices, j = [], 0
    for position in positions:
        while j < len(cumulative) - 1 and not position < cumulative[j]:
            j += 1
        indices.append(j)
    return indices


SCHEMES = {"multinomial": multinomial, "systematic": systematic}


def resample(
    log_weights: Sequence[float], k: int, seed: int, scheme: str, temperature: float = 1.0
) -> tuple[list[int], np.ndarray]:
    """Indices of the k particles drawn by `scheme` from the weights, and the probabilities used."""
    probs = probabilities(log_weights, temperature)
    return SCHEMES[scheme](probs, k, random.Random(seed)), probs


def choose(log_weights: Sequence[float], k: int, seed: int, temperature: float = 1.0) -> list[int]:
    """k indices drawn with replacement by weight (its_hub's reference particles and `sample` selection)."""
    return multinomial(probabilities(log_weights, temperature), k, random.Random(seed))
