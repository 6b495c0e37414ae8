"""Temperature assignment, per-request seeds, and the settings validation that guards them."""

from __future__ import annotations

import random

import pytest

from sal_core.errors import ConfigError
from sal_core.search.temperatures import SEED_MODULUS, derive_seed, split_counts, temperature_list
from sal_core.settings.jobs import GenerateJob, SearchSettings


def test_split_counts_always_sums_to_n():
    rng = random.Random(0)
    for _ in range(500):
        k = rng.randint(1, 6)
        ratios = [rng.random() for _ in range(k)]
        n = rng.randint(0, 300)
        counts = split_counts(n, ratios)
        assert sum(counts) == n
        assert len(counts) == k
        # largest remainder: every count is within one of its exact share
        total = sum(ratios)
        assert all(abs(c - n * r / total) < 1 for c, r in zip(counts, ratios, strict=True))


@pytest.mark.parametrize(
    ("n", "ratios", "expected"),
    [
        (3, [0.5, 0.5], [2, 1]),  # tie on remainder: earlier temperature wins
        (4, [0.5, 0.5], [2, 2]),
        (10, [0.25, 0.25, 0.5], [3, 2, 5]),  # 2.5, 2.5, 5 -> first .5 remainder goes to the first
        (5, [0.1, 0.3, 0.6], [1, 1, 3]),  # 0.5, 1.5, 3.0: tie of .5 remainders, despite float noise
        (7, [1 / 3, 1 / 3, 1 / 3], [3, 2, 2]),
        (1, [0.2, 0.8], [0, 1]),
    ],
)
def test_split_counts_largest_remainder(n, ratios, expected):
    assert split_counts(n, ratios) == expected


def test_temperature_list_without_ratios_cycles():
    assert temperature_list(5, [0.2, 1.0], None) == [0.2, 1.0, 0.2, 1.0, 0.2]
    assert temperature_list(4, [0.8], None) == [0.8] * 4
    assert temperature_list(2, [0.1, 0.7, 1.3], None) == [0.1, 0.7]
    with pytest.raises(ValueError):
        temperature_list(2, [], None)


def test_temperature_list_follows_ratios_in_blocks():
    temps = temperature_list(16, [0.4, 0.8, 1.2], [0.25, 0.25, 0.5])
    assert temps == [0.4] * 4 + [0.8] * 4 + [1.2] * 8
    # a temperature with ratio 0 gets no sample
    assert temperature_list(3, [0.1, 0.9], [0.0, 1.0]) == [0.9, 0.9, 0.9]


def test_derive_seed_is_deterministic_distinct_and_in_range():
    seeds = {derive_seed(7, p, j) for p in range(50) for j in range(50)}
    assert len(seeds) == 2500
    assert all(0 <= s < SEED_MODULUS for s in seeds)
    assert derive_seed(7, 1, 0) == derive_seed(7, 1, 0)
    assert derive_seed(7, 1, 0) != derive_seed(7, 0, 1)
    assert derive_seed(7, 1, 0) != derive_seed(8, 1, 0)


def _search(**overrides):
    return {"method": "best_of_n", "n": 4, **overrides}


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        ({"temperatures": [0.5, 1.0], "temperature_ratios": [0.5, 0.4]}, "search.temperature_ratios"),
        ({"temperatures": [0.5, 1.0], "temperature_ratios": [1.0]}, "search.temperature_ratios"),
        ({"temperatures": [0.5], "temperature_ratios": [-0.5, 1.5]}, "search.temperature_ratios"),
        ({"temperatures": []}, "search.temperatures"),
        ({"temperatures": [-0.1]}, "search.temperatures"),
        ({"method": "beam_search", "n": 6, "beam_width": 4}, "search.n"),
        ({"method": "dvts", "n": 8, "beam_width": 3}, "search.n"),
        ({"method": "greedy"}, "search.method"),
        ({"top_p": 0}, "search.top_p"),
        ({"method": "beam_search", "lookahead": -1}, "search.lookahead"),
        ({"aggregation": "mean"}, "search.aggregation"),
        ({"beam": 4}, "search.beam"),
    ],
)
def test_search_settings_reject_bad_values_naming_the_key(overrides, culprit):
    with pytest.raises(ConfigError, match=culprit.replace(".", r"\.")):
        SearchSettings.from_dict(_search(**overrides))


def test_search_settings_accept_valid_schemes():
    SearchSettings.from_dict(_search(temperatures=[0.4, 0.8], temperature_ratios=[0.3, 0.7]))
    SearchSettings.from_dict(_search(method="dvts", n=8, beam_width=4, temperatures=[0.4, 0.8, 1.2]))


def test_guided_methods_need_a_prm():
    job = {"model": {"name": "m", "path": "/x"}, "search": _search(method="beam_search", beam_width=2)}
    with pytest.raises(ConfigError, match="needs a PRM"):
        GenerateJob.from_dict(job)
