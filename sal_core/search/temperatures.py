"""Which temperature and which seed each sample gets.

Multi-temperature sampling mixes "hot" and "cold" samples in one run. Best-of-N splits its n samples
across temperatures by ratio, always giving exactly n (largest-remainder rounding, so 3 samples at
ratios 0.5/0.5 become 2 + 1, never 2 + 2 or 1 + 1). Beam search and DVTS cycle the temperatures
across beam slots / subtrees instead, since their samples are re-drawn at every step.

Seeds are derived per request from the run seed and the request's position (problem, sample, step),
so a run is reproducible and no two requests share a random stream.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

#: seeds stay below 2**31 so every engine (torch, vLLM, numpy) accepts them
SEED_MODULUS = 2**31 - 1


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Split n into integer counts proportional to `ratios` that sum to exactly n.

    Largest-remainder method: floor every share, then hand the leftover units to the largest
    fractional parts (ties go to the earlier temperature).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    total = float(sum(ratios))
    if not ratios or total <= 0:
        raise ValueError(f"ratios must be non-empty with a positive sum, got {list(ratios)}")
    shares = [n * r / total for r in ratios]
    counts = [math.floor(s) for s in shares]
    leftover = n - sum(counts)
    # rounded so float noise (5 * 0.3 = 1.4999...) cannot break a true tie against the earlier temperature
    by_remainder = sorted(range(len(shares)), key=lambda i: (-round(shares[i] - counts[i], 9), i))
    for i in by_remainder[:leftover]:
        counts[i] += 1
    return counts


def best_of_n_temperatures(n: int, temperatures: Sequence[float], ratios: Sequence[float] | None) -> list[float]:
    """One temperature per Best-of-N sample, in blocks (all samples of the first temperature first)."""
    weights = list(ratios) if ratios is not None else [1.0] * len(temperatures)
    counts = split_counts(n, weights)
    return [float(t) for t, c in zip(temperatures, counts, strict=True) for _ in range(c)]


def cycle_temperatures(count: int, temperatures: Sequence[float]) -> list[float]:
    """Temperatures for `count` beam slots or subtrees: slot i gets temperatures[i % len]."""
    if not temperatures:
        raise ValueError("need at least one temperature")
    return [float(temperatures[i % len(temperatures)]) for i in range(count)]


def derive_seed(seed: int, *position: int) -> int:
    """A seed for one request, from the run seed and the request's position (problem, sample, step ...).

    Hashing (not adding) keeps seeds of neighbouring positions unrelated, so e.g. (problem 1, sample 0)
    and (problem 0, sample 1) never collide.
    """
    key = ",".join(str(int(p)) for p in (seed, *position)).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") % SEED_MODULUS
