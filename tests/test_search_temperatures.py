"""Multi-temperature sampling as the seed project states it (hotncold TEST_GUIDE.md, its n=12
examples), run through the real searches on the tiny model: which temperature every request got."""

from __future__ import annotations

import pytest
from search_helpers import PROBLEMS, Run, search

from sal_core.search.temperatures import slot_temperatures, temperature_list

TEMPS = [0.6, 0.8, 1.0]
RATIOS = [0.33, 0.34, 0.33]
GUIDED = {"num_iterations": 3, "max_tokens": 8}


@pytest.fixture(scope="module")
def models(engine, judge, tiny_model_path) -> tuple:
    return engine, judge, tiny_model_path


def run_on(models: tuple, method: str, problems: int, **settings) -> Run:
    """`method` on the first `problems` test problems, through the counting wrappers."""
    return search(*models, method, problems=PROBLEMS[:problems], **settings)


def test_the_guides_ratio_split_is_4_4_4_not_hotncolds_3_6_3():
    assert temperature_list(12, TEMPS, RATIOS) == [0.6] * 4 + [0.8] * 4 + [1.0] * 4
    # over beam_width 3 the ratios keep all three temperatures (hotncold's rounding: [0.8, 0.8, 0.8])
    assert temperature_list(3, TEMPS, RATIOS) == TEMPS
    assert temperature_list(4, TEMPS, RATIOS) == [0.6, 0.8, 0.8, 1.0]


def test_best_of_n_splits_n_by_ratio_in_blocks_and_cycles_without_ratios(models):
    ratios = run_on(models, "best_of_n", 1, n=12, max_tokens=2, temperatures=TEMPS, temperature_ratios=RATIOS)
    assert ratios.results[0].temperatures == [0.6] * 4 + [0.8] * 4 + [1.0] * 4
    # hotncold's recipes/test/multi_temp_equal.yaml: n=6 over three temperatures, 2 each, interleaved
    equal = run_on(models, "best_of_n", 1, n=6, max_tokens=2, temperatures=[0.4, 0.8, 1.2])
    assert equal.results[0].temperatures == [0.4, 0.8, 1.2, 0.4, 0.8, 1.2]
    assert [req.temperature for req, _ in equal.backend.calls[0]] == [0.4, 0.8, 1.2, 0.4, 0.8, 1.2]


def _per_problem_steps(run: Run, problem: int) -> list[list]:
    """Each sampling call's requests for `problem`, in slot order (lookahead calls are greedy)."""
    calls = [call for call in run.backend.calls if any(req.temperature > 0 for req, _ in call)]
    return [[req for req, _ in call if req.prompt.startswith(run.prompts[problem])] for call in calls]


@pytest.mark.parametrize(
    ("beam_width", "ratios", "listed"),
    [
        (3, RATIOS, [0.6, 0.8, 1.0]),  # the guide's beam search example (with test_hot_cold.sh's ratios)
        (3, None, [0.6, 0.8, 1.0]),
        (4, None, [0.6, 0.8, 1.0, 0.6]),
        (4, RATIOS, [0.6, 0.8, 0.8, 1.0]),
    ],
)
def test_beam_search_gives_each_kept_beam_every_temperature_of_the_list(models, beam_width, ratios, listed):
    run = run_on(
        models,
        "beam_search",
        2,
        n=12,
        beam_width=beam_width,
        temperatures=TEMPS,
        temperature_ratios=ratios,
        filter_duplicates=True,
        **GUIDED,
    )
    slots = slot_temperatures(12, beam_width, listed)
    assert slots == [t for t in listed for _ in range(12 // beam_width)]
    for problem in range(2):
        steps = _per_problem_steps(run, problem)
        assert [req.temperature for req in steps[0]] == slots
        assert len(steps) >= 2, "the step-favouring model should take more than one step"
        for requests in steps[1:]:
            if not requests:
                continue
            assert len(requests) == 12 and [req.temperature for req in requests] == slots
            kept = list(dict.fromkeys(req.prompt for req in requests))  # distinct (filter_duplicates)
            # search-and-learn's layout: slot j continues kept beam j % len(kept)
            assert [req.prompt for req in requests] == [kept[j % len(kept)] for j in range(12)]
            if len(kept) == 12 // beam_width:
                for prompt in kept:
                    got = [req.temperature for req in requests if req.prompt == prompt]
                    assert got == listed


@pytest.mark.parametrize(
    ("ratios", "listed"),
    [(None, [0.6, 0.8, 1.0, 0.6]), (RATIOS, [0.6, 0.8, 0.8, 1.0])],
)
def test_dvts_gives_each_candidate_of_every_subtree_its_own_temperature(models, ratios, listed):
    """The guide: n=12, beam_width=4, three subtrees, each subtree's 4 paths at [0.6, 0.8, 1.0, 0.6]."""
    run = run_on(models, "dvts", 2, n=12, beam_width=4, temperatures=TEMPS, temperature_ratios=ratios, **GUIDED)
    for problem in range(2):
        for requests in _per_problem_steps(run, problem):
            assert len(requests) % 4 == 0
            assert [req.temperature for req in requests] == listed * (len(requests) // 4)
        # a completion records the temperature that sampled its last step
        sampled = {req.prompt + out.text: req.temperature for call in run.backend.calls for req, out in call}
        result = run.results[problem]
        for text, temperature in zip(result.completions, result.temperatures, strict=True):
            assert sampled[run.prompts[problem] + text] == temperature


def test_the_embedded_defaults_hot_cold_ratios_reach_beam_search_and_dvts(models):
    """config/config.yaml's hot-cold sampling has ratios and runs beam search and DVTS: they are used."""
    hot_cold = {"temperatures": [0.4, 1.2], "temperature_ratios": [0.25, 0.75]}
    dvts = run_on(models, "dvts", 1, n=4, beam_width=4, **hot_cold, **GUIDED)
    assert [req.temperature for req, _ in dvts.backend.calls[0]] == [0.4, 1.2, 1.2, 1.2]
    beam = run_on(models, "beam_search", 1, n=8, beam_width=4, **hot_cold, **GUIDED)
    assert [req.temperature for req, _ in beam.backend.calls[0]] == [0.4, 0.4] + [1.2] * 6
