"""Which temperature and which seed each sample gets.

Multi-temperature sampling mixes "hot" and "cold" samples in one run. One rule builds every method's
temperature list (`temperature_list`), following the seed project's stated intent (hotncold's
TEST_GUIDE.md) and its code's layout (hotncold `src/sal/utils/temperature.py`):

- with `temperature_ratios`, the count is split by ratio with the largest-remainder method, in
  blocks (n=12 at [0.33, 0.34, 0.33] gives 4/4/4, as the guide says; hotncold's own rounding gives
  3/6/3);
- without ratios, the temperatures are cycled (n=4 over [0.6, 1.0]: 0.6, 1.0, 0.6, 1.0);
- Best-of-N's `temperature_layout: interleaved` keeps the ratio's counts but orders them so that every
  first k samples hold each temperature in proportion (`interleave`): first-n scoring (`--protocol
  sal`, hotncold's score_all_subsets) would otherwise see only the first block at small n.

Best-of-N builds that list over n samples. Beam search and DVTS build it over `beam_width`: DVTS
candidate c of every subtree samples at list[c]; beam-search slot j samples at
list[j // (n / beam_width)], so each kept beam's beam_width copies meet every entry once.

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


def temperature_list(
    count: int, temperatures: Sequence[float], ratios: Sequence[float] | None, layout: str = "blocks"
) -> list[float]:
    """`count` temperatures: split by `ratios` in blocks (largest remainder, exactly `count`), or
    interleaved with layout "interleaved"; without ratios the temperatures cycled (entry i is
    temperatures[i % len]), which is interleaved already."""
    if not temperatures:
        raise ValueError("need at least one temperature")
    if ratios is None:
        return [float(temperatures[i % len(temperatures)]) for i in range(count)]
    counts = split_counts(count, ratios)
    if layout == "interleaved":
        return [float(temperatures[i]) for i in interleave(counts)]
    return [float(t) for t, c in zip(temperatures, counts, strict=True) for _ in range(c)]


def interleave(counts: Sequence[int]) -> list[int]:
    """Indices 0..len-1, index i `counts[i]` times, ordered so that each prefix of length k is as close
    as possible to k * counts / total: at every step the index furthest behind its share (ties: the
    earlier index). Every prefix is within one sample of its share per index."""
    total = sum(counts)
    taken = [0] * len(counts)
    order = []
    for k in range(1, total + 1):
        behind = [k * c / total - t for c, t in zip(counts, taken, strict=True)]
        i = max(range(len(counts)), key=lambda j: (round(behind[j], 9), -j))
        taken[i] += 1
        order.append(i)
    return order


def slot_temperatures(n: int, beam_width: int, listed: Sequence[float]) -> list[float]:
    """Beam search: the temperature of each of the n slots, `listed[j // (n / beam_width)]`, i.e.
    blocks of n / beam_width consecutive slots per entry of the beam_width-long list (hotncold
    `src/sal/search/beam_search.py`)."""
    per_entry = n // beam_width
    return [float(listed[j // per_entry]) for j in range(n)]


def derive_seed(seed: int, *position: int) -> int:
    """A seed for one request, from the run seed and the request's position (problem, sample, step ...).

    Hashing (not adding) keeps seeds of neighbouring positions unrelated, so e.g. (problem 1, sample 0)
    and (problem 0, sample 1) never collide.
    """
    key = ",".join(str(int(p)) for p in (seed, *position)).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") % SEED_MODULUS
