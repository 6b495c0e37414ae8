"""The search methods on a real (tiny, random) model and a real RLHFlow-format judge, through the
counting wrappers of tests/search_helpers.py: batching (one generate and one PRM call per step for
all problems) and alignment (each completion continues its own problem's prompt). The policy's
output layer favours the step separator, so searches really take several steps.
"""

from __future__ import annotations

import logging

import pytest
from search_helpers import PROBLEMS, CountingBackend, CountingPRM, Run, make_job, search

from sal_core.backends import load_backend
from sal_core.prm import load_prm
from sal_core.prm.base import split_steps
from sal_core.prm.step_aggregation import aggregate_steps
from sal_core.search import build_prompts, run_search
from sal_core.search.steps import ends_solution, states_answer

BON = {"n": 5, "max_tokens": 6, "temperatures": [0.3, 1.0], "temperature_ratios": [0.5, 0.5]}
BEAM = {
    "n": 4,
    "beam_width": 2,
    "num_iterations": 3,
    "max_tokens": 10,
    "temperatures": [0.5, 1.0],
    "sort_completed": True,
    "aggregation": "min",
}
DVTS = {"n": 6, "beam_width": 2, "num_iterations": 3, "max_tokens": 10, "temperatures": [0.4, 1.2]}
SETTINGS = {"best_of_n": BON, "beam_search": BEAM, "dvts": DVTS}


@pytest.fixture(scope="module")
def runs(engine, judge, tiny_model_path) -> dict[str, Run]:
    """Each method once on all test problems (shared by the tests that only inspect a run)."""
    return {method: search(engine, judge, tiny_model_path, method, **s) for method, s in SETTINGS.items()}


def produced_by(run: Run, prompt: str, completion: str) -> bool:
    """Whether some generate call continued `prompt` + a prefix of `completion` into exactly `completion`."""
    whole = prompt + completion
    calls = run.backend.calls
    return any(req.prompt.startswith(prompt) and req.prompt + out.text == whole for call in calls for req, out in call)


# ---------------------------------------------------------------- alignment and counts


@pytest.mark.parametrize("method", ["best_of_n", "beam_search", "dvts"])
def test_each_problem_gets_its_own_completions_in_order(runs, method):
    run = runs[method]
    n = run.settings["n"]
    assert len(run.results) == len(PROBLEMS)
    for prompt, result in zip(run.prompts, run.results, strict=True):
        if method == "dvts":
            assert n // 2 <= len(result.completions) <= n  # at least one finished candidate per subtree
        else:
            assert len(result.completions) == n
        for completion in result.completions:
            assert produced_by(run, prompt, completion), "a completion must continue its own problem's prompt"
        assert all(t > 0 for t in result.completion_tokens)
        assert all(r in ("stop", "length", "eos") for r in result.finish_reasons)
        if method == "best_of_n":
            assert result.search_scores is None
            assert result.groups == list(range(n))
        else:
            # one in-search score per reasoning step of the completion
            assert [len(s) for s in result.search_scores] == [len(split_steps(c)) for c in result.completions]


def test_best_of_n_one_call_with_split_temperatures_and_distinct_seeds(runs):
    run = runs["best_of_n"]
    (call,) = run.backend.calls
    assert len(call) == 5 * len(PROBLEMS)
    assert len({req.seed for req, _ in call}) == len(call)
    assert all(req.stop == () and req.max_tokens == 6 for req, _ in call)
    sampled_at = {(req.prompt, out.text): req.temperature for req, out in call}
    for prompt, result in zip(run.prompts, run.results, strict=True):
        assert result.temperatures == [0.3, 0.3, 0.3, 1.0, 1.0]
        for text, temperature in zip(result.completions, result.temperatures, strict=True):
            assert sampled_at[(prompt, text)] == temperature


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("method", ["beam_search", "dvts"])
def test_one_generate_and_one_prm_call_per_step_for_all_problems(runs, engine, judge, tiny_model_path, method):
    single = search(engine, judge, tiny_model_path, method, problems=PROBLEMS[:1], **SETTINGS[method])
    for run, problems in ((single, PROBLEMS[:1]), (runs[method], PROBLEMS)):
        steps = len(run.backend.calls)
        assert 1 <= steps <= run.settings["num_iterations"]
        assert len(run.prm.calls) == steps
        # the first step covers every problem in that one generate call and that one PRM call
        assert len({req.prompt for req, _ in run.backend.calls[0]}) == len(problems)
        assert len(run.backend.calls[0]) == len(problems) * run.settings["n"]
        assert run.prm.calls[0][0] == list(problems)


def test_lookahead_adds_one_greedy_call_per_lookahead_step(engine, judge, tiny_model_path):
    run = search(engine, judge, tiny_model_path, "beam_search", problems=PROBLEMS[:1], **{**BEAM, "lookahead": 1})
    sampled = [call for call in run.backend.calls if any(req.temperature > 0 for req, _ in call)]
    greedy = [call for call in run.backend.calls if all(req.temperature == 0 for req, _ in call)]
    assert len(sampled) + len(greedy) == len(run.backend.calls)
    assert len(sampled) == len(run.prm.calls)
    assert 1 <= len(greedy) <= len(sampled) - 1  # none in the last iteration
    # rollouts are scored (the judge saw longer texts than the sampled steps) but never kept
    for problem, result in enumerate(run.results):
        for completion in result.completions:
            assert produced_by(run, run.prompts[problem], completion)


# ---------------------------------------------------------------- beam search invariants


def test_beam_search_keeps_n_over_beam_width_and_never_exceeds_n(runs):
    run = runs["beam_search"]
    assert len(run.backend.calls) >= 2, "the step-favouring model should need more than one step"
    for step in range(len(run.backend.calls)):
        last = step == BEAM["num_iterations"] - 1
        for problem in range(len(PROBLEMS)):
            mine = run.requests_of(step, problem)
            assert len(mine) <= 4
            if step > 0 and mine:
                # every live beam descends from one of the n / beam_width = 2 kept beams
                assert len({req.prompt for req in mine}) <= 2
            # slots in blocks of n / beam_width per entry of the beam_width-long list [0.5, 1.0]
            assert [req.temperature for req in mine] == [0.5, 0.5, 1.0, 1.0][: len(mine)]
            assert all(req.stop == (() if last else ("\n\n",)) for req in mine)
    for result in run.results:
        assert set(result.temperatures) <= {0.5, 1.0}
        assert result.groups == [0, 1, 2, 3]


def test_beam_search_sort_completed_orders_by_aggregated_score(runs):
    for result in runs["beam_search"].results:
        ranked = [aggregate_steps(s, "min") for s in result.search_scores]
        assert ranked == sorted(ranked, reverse=True)


def test_search_scores_are_the_judges_scores_of_the_completion(runs, judge):
    for problem, result in zip(PROBLEMS, runs["beam_search"].results, strict=True):
        rescored = judge.score([problem], [result.completions])[0]
        for mine, fresh in zip(result.search_scores, rescored, strict=True):
            assert mine == pytest.approx(fresh, abs=1e-4)


# ---------------------------------------------------------------- DVTS


def test_dvts_returns_only_finished_candidates_grouped_by_subtree(runs):
    run = runs["dvts"]
    last_steps = {req.prompt + out.text: (req, out) for call in run.backend.calls for req, out in call}
    for prompt, result in zip(run.prompts, run.results, strict=True):
        assert result.groups == sorted(result.groups)
        assert set(result.groups) == {0, 1, 2}  # every subtree returns at least one completion
        assert all(result.groups.count(g) <= 2 for g in range(3))
        for text, temperature, reason in zip(
            result.completions, result.temperatures, result.finish_reasons, strict=True
        ):
            request, step = last_steps[prompt + text]
            assert ends_solution(step) or states_answer(text)
            assert reason == step.finish_reason
            assert temperature == request.temperature
    # candidate c of every subtree samples at entry c of the temperature list
    for problem in range(len(PROBLEMS)):
        first = run.requests_of(0, problem)
        assert [req.temperature for req in first] == [0.4, 1.2] * 3


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("method", ["best_of_n", "beam_search", "dvts"])
def test_same_seed_same_results(engine, judge, tiny_model_path, method):
    settings = {**SETTINGS[method], "n": 4, "num_iterations": 2}
    first, again, other = (
        search(engine, judge, tiny_model_path, method, problems=PROBLEMS[:1], **{**settings, "seed": seed}).results
        for seed in (3, 3, 4)
    )
    assert first == again
    assert first[0].completions != other[0].completions


# ---------------------------------------------------------------- context window


@pytest.mark.parametrize("method", ["beam_search", "dvts"])
def test_beams_that_outgrow_max_model_len_are_pruned_not_crashed(engine, judge, tiny_model_path, method, caplog):
    # the shortest prompt leaves room for a step or two; the longest no room at all
    prompts = build_prompts(PROBLEMS, make_job(tiny_model_path, method, **SETTINGS[method]), engine)
    lengths = [engine.prompt_length(p) for p in prompts]
    window = min(lengths) + 7
    assert max(lengths) > window - 4
    settings = {**SETTINGS[method], "n": 4, "num_iterations": 4}
    with caplog.at_level(logging.WARNING, logger="sal_core.search.steps"):
        run = search(engine, judge, tiny_model_path, method, max_model_len=window, **settings)
    for call in run.backend.calls:
        for req, _ in call:
            assert engine.prompt_length(req.prompt) + req.max_tokens <= window
    assert f"no longer fits max_model_len={window}" in caplog.text
    longest = lengths.index(max(lengths))
    assert set(run.results[longest].finish_reasons) == {"length"}
    assert set(run.results[longest].completions) == {""}
    for result in run.results:
        # beam search still returns n completions; DVTS at least one from each of its 2 subtrees
        assert set(result.groups) == ({0, 1, 2, 3} if method == "beam_search" else {0, 1})


def test_best_of_n_prompt_longer_than_the_window_gives_empty_length_completions(engine, judge, tiny_model_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sal_core.search.steps"):
        run = search(engine, judge, tiny_model_path, "best_of_n", max_model_len=20, n=3, max_tokens=4)
    assert all(call == [] for call in run.backend.calls)
    assert all(r.completions == ["", "", ""] and r.finish_reasons == ["length"] * 3 for r in run.results)
    assert "no longer fits" in caplog.text


# ---------------------------------------------------------------- the real SmolLM2


@pytest.mark.slow
def test_all_methods_on_smollm2(smollm2_path):
    """Every method end to end on the real SmolLM2-135M, judged by SmolLM2 in RLHFlow format."""
    problems = ["What is $2 + 3$?", "What is $4 \\times 5$?"]
    backend = CountingBackend(load_backend(make_job(smollm2_path, "best_of_n", n=1, max_model_len=2048).model))
    judge = CountingPRM(load_prm(make_job(smollm2_path, "dvts", n=2, beam_width=2).prm))
    settings = {
        "best_of_n": {"n": 4, "max_tokens": 48, "temperatures": [0.4, 1.0]},
        "beam_search": {"n": 4, "beam_width": 2, "num_iterations": 2, "max_tokens": 32},
        "dvts": {"n": 4, "beam_width": 2, "num_iterations": 2, "max_tokens": 32},
    }
    for method, search_settings in settings.items():
        backend.calls.clear()
        judge.calls.clear()
        job = make_job(smollm2_path, method, max_model_len=2048, **search_settings)
        results = run_search(problems, job, backend, judge if method != "best_of_n" else None)
        prompts = build_prompts(problems, job, backend)
        assert len(results) == 2
        assert len(backend.calls) <= search_settings.get("num_iterations", 1)
        for prompt, result in zip(prompts, results, strict=True):
            assert (len(result.completions) == 4) if method != "dvts" else (1 <= len(result.completions) <= 4)
            calls = backend.calls
            whole = [req.prompt + out.text for call in calls for req, out in call if req.prompt.startswith(prompt)]
            assert all(prompt + c in whole for c in result.completions)
            # a real model writes real text, not an empty string
            assert all(c.strip() for c in result.completions)
            if method != "best_of_n":
                assert all(0.0 <= s <= 1.0 for scores in result.search_scores for s in scores)
