"""When a beam or a DVTS subtree ends, as search-and-learn decides it: its beam search ends a beam only
on end of sequence, the token limit or an empty step; its DVTS also ends a subtree whose text
contains "boxed{" (no backslash needed). `stop_at_boxed` switches the boxed rule per approach.

The policy is a chain model (tests/search_helpers.py) whose text is fixed by its weights: a first
step that states a boxed answer, then "Done." and end of sequence."""

from __future__ import annotations

from pathlib import Path

import pytest
from search_helpers import BARE_TEMPLATE, CHAIN_END, CHAIN_STEP_BOXED, CHAIN_STEP_PLAIN, chain_policy, search

from sal_core.backends import load_backend
from sal_core.errors import ConfigError
from sal_core.settings.jobs import ModelSettings, SearchSettings

CHAT = {"chat_template": BARE_TEMPLATE, "system_prompt": ""}
GUIDED = {"n": 4, "beam_width": 2, "num_iterations": 4, "max_tokens": 16, "temperatures": [0.7, 1.0]}


@pytest.fixture(scope="module")
def chain(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = chain_policy(tiny_model_path, tmp_path_factory.mktemp("chain"))
    return load_backend(ModelSettings(name="chain", path=str(folder), device="cpu", **CHAT))


def _run(chain, judge, tiny_model_path, method, problem, **settings):
    return search(chain, judge, tiny_model_path, method, problems=[problem], model=CHAT, **{**GUIDED, **settings})


def test_the_chain_policy_writes_what_its_weights_say(chain, judge, tiny_model_path):
    run = search(
        chain,
        judge,
        tiny_model_path,
        "best_of_n",
        problems=["Solve:", "Solve?"],
        model=CHAT,
        n=2,
        max_tokens=16,
        temperatures=[1.0],
    )
    assert [r.completions for r in run.results] == [
        [CHAIN_STEP_BOXED + CHAIN_END] * 2,
        [CHAIN_STEP_PLAIN + CHAIN_END] * 2,
    ]
    assert {reason for r in run.results for reason in r.finish_reasons} == {"eos"}


def test_beam_search_does_not_end_a_beam_at_a_boxed_answer_by_default(chain, judge, tiny_model_path):
    run = _run(chain, judge, tiny_model_path, "beam_search", "Solve:")
    (result,) = run.results
    assert result.completions == [CHAIN_STEP_BOXED + CHAIN_END] * 4
    assert result.finish_reasons == ["eos"] * 4
    assert len(run.backend.calls) == 2


def test_stop_at_boxed_ends_beams_at_a_boxed_answer(chain, judge, tiny_model_path):
    run = _run(chain, judge, tiny_model_path, "beam_search", "Solve:", stop_at_boxed=True)
    (result,) = run.results
    assert result.completions == [CHAIN_STEP_BOXED] * 4
    assert result.finish_reasons == ["stop"] * 4
    assert len(run.backend.calls) == 1


@pytest.mark.parametrize("problem", ["Solve:", "Solve?"])
def test_dvts_ends_a_subtree_whose_text_contains_boxed(chain, judge, tiny_model_path, problem):
    """search-and-learn tests `"boxed{" in beam.current_text`: "Theboxed{5}$" ends a subtree too."""
    step = CHAIN_STEP_BOXED if problem == "Solve:" else CHAIN_STEP_PLAIN
    (result,) = _run(chain, judge, tiny_model_path, "dvts", problem).results
    assert result.completions == [step] * 4
    assert result.groups == [0, 0, 1, 1]
    (result,) = _run(chain, judge, tiny_model_path, "dvts", problem, stop_at_boxed=False).results
    assert result.completions == [step + CHAIN_END] * 4
    assert result.finish_reasons == ["eos"] * 4


def test_stop_at_boxed_defaults_to_each_methods_search_and_learn_rule():
    assert not SearchSettings(method="beam_search", n=4).stops_at_boxed
    assert SearchSettings(method="dvts", n=4).stops_at_boxed
    assert SearchSettings(method="beam_search", n=4, stop_at_boxed=True).stops_at_boxed
    assert not SearchSettings(method="dvts", n=4, stop_at_boxed=False).stops_at_boxed


@pytest.mark.parametrize("method", ["beam_search", "dvts"])
def test_a_step_that_ends_by_the_boxed_rule_gets_no_lookahead_rollout(chain, judge, tiny_model_path, method):
    """Its scores are the finished solution's own, so `sal score` may reuse them."""
    run = _run(chain, judge, tiny_model_path, method, "Solve:", stop_at_boxed=True, lookahead=1)
    assert all(req.temperature > 0 for call in run.backend.calls for req, _ in call), "no greedy rollout call"
    (result,) = run.results
    assert result.completions == [CHAIN_STEP_BOXED] * 4
    rescored = judge.score(["Solve:"], [result.completions])[0]
    for mine, fresh in zip(result.search_scores, rescored, strict=True):
        assert mine == pytest.approx(fresh, abs=1e-5)


def test_best_of_n_ends_at_a_stop_string_and_cuts_it_from_the_text(chain, judge, tiny_model_path):
    plain = search(chain, judge, tiny_model_path, "best_of_n", problems=["Solve:"], model=CHAT, n=2, max_tokens=16)
    run = search(
        chain,
        judge,
        tiny_model_path,
        "best_of_n",
        problems=["Solve:"],
        model=CHAT,
        n=2,
        max_tokens=16,
        stop=["\n\nDone"],
    )
    (result,) = run.results
    assert result.completions == [CHAIN_STEP_BOXED.rstrip("\n")] * 2
    assert result.finish_reasons == ["stop"] * 2
    # the stop string's tokens were generated, so they are counted; what followed it never was
    assert 0 < result.completion_tokens[0] < plain.results[0].completion_tokens[0]
    assert [r.stop for calls in run.backend.calls for r, _ in calls] == [("\n\nDone",)] * 2


@pytest.mark.parametrize(("method", "stop"), [("beam_search", ["\n\nProblem:"]), ("best_of_n", [""])])
def test_stop_strings_are_non_empty_and_for_best_of_n_only(method, stop):
    with pytest.raises(ConfigError, match=r"approaches\.x\.stop: non-empty strings, for best_of_n only"):
        SearchSettings.from_dict({"method": method, "n": 4, "beam_width": 2, "stop": stop}, "approaches.x")
