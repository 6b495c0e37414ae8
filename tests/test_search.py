"""The search methods on a real (tiny, random) model and a real RLHFlow-format judge.

Counting wrappers around the real backend and PRM delegate every call and only record what was
asked, so tests can check batching (one generate and one PRM call per step for all problems) and
alignment (each completion continues its own problem's prompt). The policy is a tiny random model
whose output layer favours the step separator, so searches really take several steps; it is a real
transformers model (random weights plus an output bias), not canned text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from sal_core.backends import load_backend
from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.config import GenerateJob
from sal_core.prm import load_prm
from sal_core.prm.aggregation import aggregate_steps
from sal_core.prm.base import PRM
from sal_core.search import SearchResult, build_prompts, run_search
from sal_core.search.common import ends_solution

PROBLEMS = [
    "What is $2 + 3$?",
    "Find the remainder when $17$ is divided by $5$.",
    "Compute $\\sqrt{81}$.",
]


class CountingBackend(GenerationBackend):
    """Delegates to `inner`, recording each generate call's requests and outputs. `max_model_len`
    may be set lower than the engine's, to make the search prune beams early."""

    def __init__(self, inner: GenerationBackend, max_model_len: int | None = None) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.max_model_len = max_model_len or inner.max_model_len
        self.calls: list[list[tuple[GenerationRequest, GenerationOutput]]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        outputs = self.inner.generate(requests)
        self.calls.append(list(zip(requests, outputs, strict=True)))
        return outputs

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class CountingPRM(PRM):
    """Delegates to `inner`, recording each score call's problems and completions."""

    def __init__(self, inner: PRM) -> None:
        self.inner = inner
        self.calls: list[tuple[list[str], list[list[str]]]] = []

    def score(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        self.calls.append((list(problems), [list(c) for c in completions]))
        return self.inner.score(problems, completions)


def favour_steps(backend: GenerationBackend, separator_bias: float = 7.0, eos_bias: float = 4.0) -> None:
    """Give the model's output layer a bias towards "\\n\\n" and end-of-sequence, so a random model
    writes short steps (a few tokens) and sometimes ends, like a real solver, instead of hitting the
    token limit on every step."""
    model = backend.model  # the transformers engine's model
    tokenizer = backend.tokenizer
    (separator,) = tokenizer.encode("\n\n", add_special_tokens=False)
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[separator] = separator_bias
        biased.bias[tokenizer.eos_token_id] = eos_bias
    model.lm_head = biased


def make_job(model_path: str, method: str, max_model_len: int = 4096, **search) -> GenerateJob:
    """A GenerateJob for the tiny model, guided (beam search, DVTS) by an RLHFlow judge on the same model."""
    data = {
        "model": {"name": "tiny", "path": str(model_path), "max_model_len": max_model_len, "batch_size": 64},
        "search": {"method": method, **search},
    }
    if method != "best_of_n":
        data["prm"] = {"name": "judge", "type": "rlhflow", "path": str(model_path), "batch_size": 16}
    return GenerateJob.from_dict(data)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def engine(tiny_model_path: Path) -> GenerationBackend:
    """The tiny model in the transformers engine, biased to write short steps."""
    backend = load_backend(make_job(tiny_model_path, "best_of_n", n=1).model)
    favour_steps(backend)
    return backend


@pytest.fixture(scope="module")
def judge(tiny_model_path: Path) -> PRM:
    """An RLHFlow-format PRM on the tiny model (random, but real, deterministic step scores)."""
    return load_prm(make_job(tiny_model_path, "beam_search", n=2, beam_width=2).prm)


def search(engine, judge, model_path, method, problems=PROBLEMS, max_model_len=None, **settings):
    """Run one search through counting wrappers; returns (results, backend wrapper, PRM wrapper)."""
    backend = CountingBackend(engine, max_model_len)
    prm = CountingPRM(judge) if method != "best_of_n" else None
    job = make_job(model_path, method, **settings)
    return run_search(list(problems), job, backend, prm), backend, prm


def produced_by(backend: CountingBackend, prompt: str, completion: str) -> bool:
    """Whether some generate call continued `prompt` + a prefix of `completion` into exactly `completion`."""
    whole = prompt + completion
    return any(
        req.prompt.startswith(prompt) and req.prompt + out.text == whole for call in backend.calls for req, out in call
    )


GUIDED = {"n": 4, "beam_width": 2, "num_iterations": 3, "max_tokens": 10}


# ---------------------------------------------------------------- alignment and counts


@pytest.mark.parametrize("method", ["best_of_n", "beam_search", "dvts"])
def test_each_problem_gets_its_own_completions_in_order(engine, judge, tiny_model_path, method):
    settings = {"n": 4, "max_tokens": 10} if method == "best_of_n" else GUIDED
    results, backend, _ = search(engine, judge, tiny_model_path, method, **settings)
    prompts = build_prompts(PROBLEMS, make_job(tiny_model_path, method, **settings), engine)
    assert len(results) == len(PROBLEMS)
    for prompt, result in zip(prompts, results, strict=True):
        assert isinstance(result, SearchResult)
        if method == "dvts":
            assert 2 <= len(result.completions) <= 4  # at least one finished candidate per subtree
        else:
            assert len(result.completions) == 4
        for completion in result.completions:
            # produced from this problem's prompt, never another's
            assert produced_by(backend, prompt, completion)
        assert all(t > 0 for t in result.completion_tokens)
        assert all(r in ("stop", "length", "eos") for r in result.finish_reasons)
        if method == "best_of_n":
            assert result.search_scores is None
            assert result.groups == [0, 1, 2, 3]
        else:
            assert all(len(s) >= 1 for s in result.search_scores)


def test_best_of_n_one_call_with_split_temperatures_and_distinct_seeds(engine, judge, tiny_model_path):
    results, backend, _ = search(
        engine,
        judge,
        tiny_model_path,
        "best_of_n",
        n=5,
        max_tokens=6,
        temperatures=[0.3, 1.0],
        temperature_ratios=[0.5, 0.5],
    )
    assert len(backend.calls) == 1
    (call,) = backend.calls
    assert len(call) == 5 * len(PROBLEMS)
    assert len({req.seed for req, _ in call}) == len(call)
    assert all(req.stop == () and req.max_tokens == 6 for req, _ in call)
    for result in results:
        assert result.temperatures == [0.3, 0.3, 0.3, 1.0, 1.0]
    # the temperature recorded for a completion is the one it was sampled at
    by_text = {(req.prompt, out.text): req.temperature for req, out in call}
    prompts = build_prompts(PROBLEMS, make_job(tiny_model_path, "best_of_n", n=5), engine)
    for prompt, result in zip(prompts, results, strict=True):
        for text, temperature in zip(result.completions, result.temperatures, strict=True):
            assert by_text[(prompt, text)] == temperature


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("method", ["beam_search", "dvts"])
def test_one_generate_and_one_prm_call_per_step_for_all_problems(engine, judge, tiny_model_path, method):
    for problems in (PROBLEMS[:1], PROBLEMS):
        results, backend, prm = search(engine, judge, tiny_model_path, method, problems=problems, **GUIDED)
        steps = len(backend.calls)
        assert 1 <= steps <= GUIDED["num_iterations"]
        assert len(prm.calls) == steps
        # the first step covers every problem in that one call
        first_prompts = {req.prompt for req, _ in backend.calls[0]}
        assert len(first_prompts) == len(problems)
        assert prm.calls[0][0] == list(problems)
        assert len(backend.calls[0]) == len(problems) * 4


def test_lookahead_adds_one_greedy_call_per_lookahead_step(engine, judge, tiny_model_path):
    _, backend, prm = search(engine, judge, tiny_model_path, "beam_search", **{**GUIDED, "lookahead": 1})
    sampled = [call for call in backend.calls if any(req.temperature > 0 for req, _ in call)]
    greedy = [call for call in backend.calls if all(req.temperature == 0 for req, _ in call)]
    assert len(sampled) == len(prm.calls)
    assert len(greedy) <= len(sampled) - 1  # no lookahead in the last iteration
    assert len(sampled) + len(greedy) == len(backend.calls)
    # lookahead text is scored but never becomes part of a completion


# ---------------------------------------------------------------- beam search invariants


def test_beam_search_keeps_n_over_beam_width_and_never_exceeds_n(engine, judge, tiny_model_path):
    settings = {**GUIDED, "n": 6, "beam_width": 3, "num_iterations": 4, "temperatures": [0.5, 1.0, 1.5]}
    results, backend, _ = search(engine, judge, tiny_model_path, "beam_search", **settings)
    prompts = build_prompts(PROBLEMS, make_job(tiny_model_path, "beam_search", **settings), engine)
    assert len(backend.calls) >= 2, "the step-favouring model should need more than one step"
    for step, call in enumerate(backend.calls):
        for prompt in prompts:
            mine = [req for req, _ in call if req.prompt.startswith(prompt)]
            assert len(mine) <= 6
            if step > 0 and mine:
                # every live beam descends from one of the n / beam_width kept beams
                assert len({req.prompt for req in mine}) <= 2
            # slots cycle through the temperatures
            assert [req.temperature for req in mine] == [[0.5, 1.0, 1.5][j % 3] for j in range(len(mine))]
            last = step == settings["num_iterations"] - 1
            assert all(req.stop == (() if last else ("\n\n",)) for req in mine)
    for result in results:
        assert len(result.completions) == 6
        assert set(result.temperatures) <= {0.5, 1.0, 1.5}
        assert result.groups == list(range(6))


def test_beam_search_sort_completed_orders_by_aggregated_score(engine, judge, tiny_model_path):
    results, _, _ = search(
        engine, judge, tiny_model_path, "beam_search", **{**GUIDED, "sort_completed": True, "aggregation": "min"}
    )
    for result in results:
        ranked = [aggregate_steps(s, "min") for s in result.search_scores]
        assert ranked == sorted(ranked, reverse=True)


def test_search_scores_are_the_judges_scores_of_the_completion(engine, judge, tiny_model_path):
    results, _, _ = search(engine, judge, tiny_model_path, "beam_search", problems=PROBLEMS[:2], **GUIDED)
    for problem, result in zip(PROBLEMS[:2], results, strict=True):
        rescored = judge.score([problem], [result.completions])[0]
        for mine, fresh in zip(result.search_scores, rescored, strict=True):
            assert mine == pytest.approx(fresh, abs=1e-4)


# ---------------------------------------------------------------- DVTS


def test_dvts_returns_only_finished_candidates_grouped_by_subtree(engine, judge, tiny_model_path):
    settings = {**GUIDED, "n": 6, "beam_width": 2, "num_iterations": 4, "temperatures": [0.4, 1.2]}
    results, backend, _ = search(engine, judge, tiny_model_path, "dvts", **settings)
    outputs = {}
    for call in backend.calls:
        for req, out in call:
            outputs[req.prompt + out.text] = out
    prompts = build_prompts(PROBLEMS, make_job(tiny_model_path, "dvts", **settings), engine)
    for prompt, result in zip(prompts, results, strict=True):
        assert result.groups == sorted(result.groups)
        assert set(result.groups) == {0, 1, 2}  # every subtree returns at least one completion
        assert all(result.groups.count(g) <= 2 for g in range(3))
        for text, group, temperature, reason in zip(
            result.completions, result.groups, result.temperatures, result.finish_reasons, strict=True
        ):
            last_step = outputs[prompt + text]
            assert ends_solution(last_step)
            assert reason == last_step.finish_reason
            assert temperature == [0.4, 1.2][group % 2]


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("method", ["best_of_n", "beam_search", "dvts"])
def test_same_seed_same_results(engine, judge, tiny_model_path, method):
    settings = {"n": 4, "max_tokens": 8} if method == "best_of_n" else GUIDED
    first, _, _ = search(engine, judge, tiny_model_path, method, problems=PROBLEMS[:2], seed=3, **settings)
    again, _, _ = search(engine, judge, tiny_model_path, method, problems=PROBLEMS[:2], seed=3, **settings)
    other, _, _ = search(engine, judge, tiny_model_path, method, problems=PROBLEMS[:2], seed=4, **settings)
    assert first == again
    assert [r.completions for r in first] != [r.completions for r in other]


# ---------------------------------------------------------------- context window


@pytest.mark.parametrize("method", ["beam_search", "dvts"])
def test_beams_that_outgrow_max_model_len_are_pruned_not_crashed(engine, judge, tiny_model_path, method, caplog):
    prompts = build_prompts(PROBLEMS, make_job(tiny_model_path, method, **GUIDED), engine)
    window = max(engine.count_tokens(p) for p in prompts) + 12
    settings = {**GUIDED, "num_iterations": 6}
    with caplog.at_level(logging.WARNING, logger="sal_core.search.common"):
        results, backend, _ = search(engine, judge, tiny_model_path, method, max_model_len=window, **settings)
    for call in backend.calls:
        for req, _ in call:
            assert engine.count_tokens(req.prompt) + req.max_tokens <= window
    assert "no longer fits max_model_len" in caplog.text
    for result in results:
        assert result.completions
        if method == "beam_search":
            assert len(result.completions) == 4
    assert any("length" in r.finish_reasons for r in results)


def test_best_of_n_prompt_longer_than_the_window_gives_empty_length_completions(engine, judge, tiny_model_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sal_core.search.common"):
        results, backend, _ = search(engine, judge, tiny_model_path, "best_of_n", max_model_len=20, n=3, max_tokens=4)
    assert backend.calls == [] or all(call == [] for call in backend.calls)
    assert all(r.completions == ["", "", ""] and r.finish_reasons == ["length"] * 3 for r in results)
    assert "no longer fits" in caplog.text
