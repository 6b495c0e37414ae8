"""Particle filtering and particle Gibbs (sal_core/search/particles.py, issue 20) on a scripted policy
and PRM: one generate and one PRM call per step for all problems, slot temperatures and seeds, the
result's particles, weights, choice and ESS, every token charged, shard independence, and the
its_hub rules (finished particles keep their weight and are resampled, references cut back)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from fixtures.its_hub_particles import scripted
from search_helpers import PROBLEMS, search

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.constants import STEP_LIMIT
from sal_core.prm.base import PRM, Scored
from sal_core.search import particles as particles_module
from sal_core.search.particles import particle_filtering
from sal_core.search.resampling import RESAMPLE, draw_seed, log_weight, probabilities, request_seed
from sal_core.search.steps import Shard
from sal_core.search.temperatures import temperature_list
from sal_core.settings.jobs import SearchSettings


class ScriptedBackend(GenerationBackend):
    """Writes scripted.step_of for each request (rank: its place among its problem's requests in the
    call; cut at the request's max_tokens; with `endings`, some steps end on EOS), with the separator
    when the step stopped there and the request stops at it; records every call."""

    max_model_len = 10_000
    tokenizer = None

    def __init__(self, problems: Sequence[str], prompts: Sequence[str], endings: bool = False) -> None:
        self.problems, self.prompts, self.endings = list(problems), list(prompts), endings
        self.calls: list[list[tuple[GenerationRequest, GenerationOutput]]] = []

    def problem_of(self, prompt: str) -> int:
        return next(p for p, start in enumerate(self.prompts) if prompt.startswith(start))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        ranks: dict[int, int] = {}
        outputs = []
        for req in requests:
            p = self.problem_of(req.prompt)
            rank = ranks[p] = ranks.get(p, -1) + 1
            prefix = req.prompt[len(self.prompts[p]) :]
            step, reason = scripted.step_of(self.problems[p], prefix, rank, req.max_tokens, self.endings)
            text = step + (scripted.SEPARATOR if reason == "stop" and scripted.SEPARATOR in req.stop else "")
            outputs.append(GenerationOutput(text, scripted.tokens(text), reason))
        self.calls.append(list(zip(requests, outputs, strict=True)))
        return outputs

    def count_tokens(self, text: str) -> int:
        return scripted.tokens(text)

    def prompt_length(self, prompt: str) -> int:
        return scripted.tokens(prompt)

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        return [[0] * scripted.tokens(prompt) for prompt in prompts]


class ScriptedPRM(PRM):
    """Scores every step of a text with scripted.step_score; reads one token per word; records calls."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str]]] = []  # per call: (problem, text) pairs

    def score_with_tokens(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> Scored:
        pairs = list(zip(problems, completions, strict=True))
        self.calls.append([(problem, t) for problem, texts in pairs for t in texts])
        scores = [[self.steps(problem, text) for text in texts] for problem, texts in pairs]
        read = [[scripted.tokens(problem + text) for text in texts] for problem, texts in pairs]
        return Scored(scores, read)

    @staticmethod
    def steps(problem: str, text: str) -> list[float]:
        """One score per step: each partial solution's scripted score."""
        steps = scripted.split(text)
        return [scripted.step_score(problem, steps[: j + 1]) for j in range(len(steps))]


PROMPTS = [f"Problem: {p}\nSolution:\n" for p in scripted.PROBLEMS]


def settings(**overrides) -> SearchSettings:
    """Particle filtering at n 4, stopping at the boxed answer as its_hub's stop token."""
    base = {"method": "particle_filtering", "n": 4, "num_iterations": 6, "max_tokens": 50, "stop_at_boxed": True}
    return SearchSettings.from_dict({**base, **overrides})


def run(search: SearchSettings, problems: Sequence[int] = (0, 1, 2), first_index: int = 0, endings: bool = False):
    """Particle filtering on the given scripted problems (`endings`: some steps end on EOS); the results,
    backend and PRM."""
    texts, prompts = [scripted.PROBLEMS[p] for p in problems], [PROMPTS[p] for p in problems]
    backend, prm = ScriptedBackend(texts, prompts, endings), ScriptedPRM()
    shard = Shard(texts, prompts, search, backend, prm, first_index)
    return particle_filtering(shard), backend, prm


def test_one_generate_and_one_prm_call_per_step_for_all_problems():
    results, backend, prm = run(settings(n=6))
    steps = max(len(ess) for r in results for ess in r.ess)
    assert len(backend.calls) == len(prm.calls) == steps
    first = backend.calls[0]
    assert len(first) == 3 * 6  # every particle of every problem samples the first step
    assert {problem for problem, _ in prm.calls[0]} == set(scripted.PROBLEMS)  # all problems, one call


def test_the_result_holds_every_final_particle_its_weight_the_choice_and_the_ess():
    results, _, _ = run(settings(n=8))
    for result in results:
        assert len(result.completions) == 8 and result.groups == list(range(8))
        assert sum(result.weights) == pytest.approx(1.0)
        expected = probabilities([log_weight(s[-1]) for s in result.search_scores])
        assert result.weights == pytest.approx(list(expected), rel=1e-12)
        assert result.selected == int(np.argmax(result.weights))
        assert len(result.ess) == 1 and all(1.0 <= e <= 8.0 + 1e-9 for e in result.ess[0])
        for text, reason in zip(result.completions, result.finish_reasons, strict=True):
            assert (scripted.STOP_TOKEN in text) == (reason == "stop")
        # duplicates are kept: resampling with replacement copies particles
    assert any(len(set(r.completions)) < len(r.completions) for r in results)


def test_every_token_generated_and_read_in_every_sweep_is_charged_to_its_problem():
    results, backend, prm = run(settings(n=6, sweeps=2, reference_particles=1, lookahead=1))
    assert any(req.temperature == 0 for call in backend.calls for req, _ in call)  # lookahead rollouts
    for p, result in enumerate(results):
        outputs = [out for call in backend.calls for req, out in call if req.prompt.startswith(PROMPTS[p])]
        read = [
            scripted.tokens(problem + t) for call in prm.calls for problem, t in call if problem == scripted.PROBLEMS[p]
        ]
        assert result.generated_tokens == sum(out.num_tokens for out in outputs) > sum(result.completion_tokens)
        assert result.prm_tokens == sum(read) > 0
        assert len(result.ess) == 2 and len(result.completions) == 3


def test_slot_i_samples_at_the_ith_temperature_with_its_own_seed_whatever_particle_it_holds():
    temps, ratios = [0.4, 0.8, 1.2], [0.25, 0.5, 0.25]
    search = settings(n=8, temperatures=temps, temperature_ratios=ratios, seed=5)
    results, backend, _ = run(search, problems=(1,), first_index=7)
    listed = temperature_list(8, temps, ratios)
    assert listed == [0.4, 0.4, 0.8, 0.8, 0.8, 0.8, 1.2, 1.2]
    assert [req.temperature for req, _ in backend.calls[0]] == listed
    slot_of = {request_seed(5, 7, 0, slot, step): (slot, step) for slot in range(8) for step in range(6)}
    for step, call in enumerate(backend.calls):
        slots = [slot_of[req.seed] for req, _ in call]
        assert all(s == step for _, s in slots) and [s for s, _ in slots] == sorted(s for s, _ in slots)
        assert [req.temperature for req, _ in call] == [listed[s] for s, _ in slots]
    assert len(backend.calls) > 1 and len(backend.calls[1]) > 0
    # a particle records the temperature that sampled its last step
    sampled = {req.prompt + out.text: req.temperature for call in backend.calls for req, out in call}
    result = results[0]
    assert [sampled[PROMPTS[1] + c] for c in result.completions] == result.temperatures


def test_a_problem_gets_the_same_particles_whatever_shard_it_is_in():
    search = settings(n=6, sweeps=2, reference_particles=2, selection="sample", resampling="systematic")
    alone, _, _ = run(search, problems=(2,), first_index=2)
    together, _, _ = run(search, problems=(0, 1, 2), first_index=0)
    assert alone[0] == together[2]
    # at other dataset rows the draws differ
    assert any(run(search, problems=(2,), first_index=row)[0][0] != alone[0] for row in (3, 4, 5))


def test_the_step_limit_ends_a_particle_with_a_finish_reason_of_its_own():
    """`step_limit`, not `length` (which a token limit and a context prune give): issue 27."""
    results, backend, _ = run(settings(n=6, num_iterations=2))
    assert len(backend.calls) <= 2
    reasons = [r for result in results for r in result.finish_reasons]
    assert STEP_LIMIT == "step_limit" and STEP_LIMIT in reasons and "length" not in reasons
    for result in results:
        for text, reason in zip(result.completions, result.finish_reasons, strict=True):
            assert len(scripted.split(text)) <= 2
            assert reason == ("stop" if scripted.STOP_TOKEN in text else STEP_LIMIT)


def test_request_seeds_never_equal_a_resampling_draws_seed():
    """Before issue 27 slot 0's request at step 0 and the draw after step 0 had one key, so one seed."""
    search = settings(n=6, sweeps=2, reference_particles=1, seed=3)
    _, backend, _ = run(search, problems=(0,), first_index=4)
    requests = {req.seed for call in backend.calls for req, _ in call}
    draws = {draw_seed(3, 4, sweep, step, kind) for sweep in range(2) for step in range(6) for kind in range(3)}
    assert request_seed(3, 4, 0, 0, 0) in requests and requests.isdisjoint(draws)
    assert request_seed(3, 4, 0, 0, 0) != draw_seed(3, 4, 0, 0, RESAMPLE)


def record_resampling(monkeypatch) -> list[list[float]]:
    """Every resampling's log weights, in order, as the search hands them to `resample`."""
    seen: list[list[float]] = []
    real = particles_module.resample

    def recorded(log_weights, k, seed, scheme, temperature):
        seen.append(list(log_weights))
        return real(log_weights, k, seed, scheme, temperature)

    monkeypatch.setattr(particles_module, "resample", recorded)
    return seen


def test_finished_particles_keep_their_weight_and_are_resampled(monkeypatch):
    """its_hub: a finished particle takes part in every later resampling with its final weight."""
    seen = record_resampling(monkeypatch)
    results, _, _ = run(settings(n=8, num_iterations=8), problems=(0,))
    assert all(len(w) == 8 for w in seen)  # every particle, finished or not, at every step
    finals = [log_weight(s[-1]) for s in results[0].search_scores]
    assert set(finals) <= {w for weights in seen for w in weights}


def test_a_particle_with_no_scored_step_weighs_the_clipped_logit_of_0(monkeypatch):
    """An empty first step ends a particle with nothing for the PRM to score: its log weight is
    logit(1e-7) = -16.1 (its_hub's clip), at every later draw too."""

    class EmptyFirst(ScriptedBackend):
        def generate(self, requests):
            outputs = super().generate(requests)
            if len(self.calls) == 1:  # slot 0's first step is empty
                outputs[0] = GenerationOutput("", 0, "stop")
            return outputs

    seen = record_resampling(monkeypatch)
    texts, prompts = [scripted.PROBLEMS[0]], [PROMPTS[0]]
    particle_filtering(Shard(texts, prompts, settings(n=4), EmptyFirst(texts, prompts), ScriptedPRM()))
    assert seen[0][0] == pytest.approx(np.log(1e-7 / (1 - 1e-7))) == pytest.approx(-16.118, abs=1e-3)
    assert all(w > -16 for w in seen[0][1:])


def test_a_reference_particle_competes_at_its_whole_run_weight_at_every_step(monkeypatch):
    """its_hub 1.2.0: a reference is finished, so it is resampled at its final weight from the sweep
    before, step after step, not at its weight after as many steps as the others (docs/search.md)."""
    seen = record_resampling(monkeypatch)
    (result,) = run(settings(n=8, sweeps=2, reference_particles=1, num_iterations=6), problems=(1,))[0]
    first, second = seen[: len(result.ess[0])], seen[len(result.ess[0]) :]
    assert len(second) == len(result.ess[1]) > 1
    assert len({weights[-1] for weights in second}) == 1 and second[0][-1] in first[-1]


def test_particle_gibbs_returns_the_last_sweeps_particles_with_the_references_last():
    search = settings(n=9, sweeps=3, reference_particles=2)
    results, _, _ = run(search)
    for result in results:
        assert len(result.completions) == 3 and result.groups == [0, 1, 2]
        assert len(result.ess) == 3 and all(len(e) >= 1 for e in result.ess)
    with pytest.raises(ValueError, match="reference particles"):
        run(replace(search, n=6))  # 2 references of 2 particles per sweep: none free


def test_sample_selection_draws_by_weight_and_weight_temperature_flattens_the_weights():
    picked = {run(settings(n=8, selection="sample", seed=s), problems=(1,))[0][0].selected for s in range(12)}
    assert len(picked) > 1
    sharp, _, _ = run(settings(n=8, seed=1))
    flat, _, _ = run(settings(n=8, seed=1, weight_temperature=100.0))
    for result in flat:
        assert max(result.weights) - min(result.weights) < 0.05
    # the first step's particles are the same in both runs: flatter weights, larger ESS
    assert all(f.ess[0][0] > s.ess[0][0] for f, s in zip(flat, sharp, strict=True))


def test_through_run_search_on_the_tiny_model_every_slot_samples_at_its_temperature(engine, judge, tiny_model_path):
    """As tests/test_search_temperatures.py checks the other methods: the real search on the tiny model
    (hot/cold: n 8 over [0.6, 0.8, 1.0] at the guide's ratios), every sampling request of every step."""
    temps, ratios = [0.6, 0.8, 1.0], [0.33, 0.34, 0.33]
    got = search(engine, judge, tiny_model_path, "particle_filtering", problems=PROBLEMS[:2], n=8, num_iterations=3,
                 max_tokens=8, temperatures=temps, temperature_ratios=ratios, seed=3)  # fmt: skip
    listed = temperature_list(8, temps, ratios)
    assert listed == [0.6, 0.6, 0.6, 0.8, 0.8, 0.8, 1.0, 1.0]
    slot_of = {request_seed(3, row, 0, slot, step): slot for row in (0, 1) for slot in range(8) for step in range(3)}
    assert [req.temperature for req in got.requests_of(0, 0)] == listed
    for call in got.backend.calls:
        for req, _ in call:
            if req.temperature > 0:  # lookahead rollouts are greedy
                assert req.temperature == listed[slot_of[req.seed]]
    for result in got.results:
        assert len(result.completions) == 8 and sum(result.weights) == pytest.approx(1.0)
        assert set(result.temperatures) <= set(temps)


def test_a_particle_that_no_longer_fits_the_context_is_pruned_with_length(caplog):
    search = settings(n=4, num_iterations=6)
    texts, prompts = [scripted.PROBLEMS[0]], [PROMPTS[0]]
    backend, prm = ScriptedBackend(texts, prompts), ScriptedPRM()
    backend.max_model_len = scripted.tokens(PROMPTS[0]) + 12  # room for about two steps
    (result,) = particle_filtering(Shard(texts, prompts, search, backend, prm))
    pruned = [c for c, r in zip(result.completions, result.finish_reasons, strict=True) if r == "length"]
    assert pruned and all(scripted.STOP_TOKEN not in c for c in pruned)
    assert any("no longer fits" in record.message for record in caplog.records)
    assert len(backend.calls) < 6 and sum(result.weights) == pytest.approx(1.0)
