"""Every token a search spends is recorded per problem: the policy's (sampled steps of pruned beams and
of DVTS candidates not chosen, lookahead rollouts) and the in-search PRM's. Checked against what the
engine really generated (a counting wrapper around the real backend) and what the PRM really read
(a hook on its forward pass counting the non-padding tokens of every batch; where a batch runs in two
passes, sal_core.backends.shared_prefix, the second pass's mask spans each row's whole sequence)."""

from __future__ import annotations

import pytest
from search_helpers import PROBLEMS, Run, search

from sal_core.search.temperatures import derive_seed

SETTINGS = {
    "best_of_n": {"n": 4, "max_tokens": 6, "temperatures": [0.4, 1.2]},
    "beam_search": {"n": 4, "beam_width": 2, "num_iterations": 3, "max_tokens": 8, "lookahead": 1},
    "dvts": {"n": 6, "beam_width": 2, "num_iterations": 3, "max_tokens": 8, "lookahead": 1},
}


@pytest.fixture(scope="module")
def runs(engine, judge, tiny_model_path) -> dict[str, tuple[Run, int]]:
    """Each method with lookahead on, and the tokens the judge's forward passes read meanwhile."""
    read: list[int] = []

    def count(module, args, kwargs) -> None:
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if cache is not None and cache.get_seq_length() == 0:
            return  # a shared-prefix pass: the suffix pass's mask counts those tokens for every row
        read.append(int(kwargs["attention_mask"].sum()))

    hook = judge.forward_module.register_forward_pre_hook(count, with_kwargs=True)
    try:
        out = {}
        for method, settings in SETTINGS.items():
            read.clear()
            out[method] = (search(engine, judge, tiny_model_path, method, **settings), sum(read))
    finally:
        hook.remove()
    return out


def _generated(run: Run, problem: int, seeds: set[int] | None = None) -> int:
    """Tokens the engine generated for `problem` (optionally only for requests with those seeds)."""
    return sum(
        out.num_tokens
        for call in run.backend.calls
        for req, out in call
        if req.prompt.startswith(run.prompts[problem]) and (seeds is None or req.seed in seeds)
    )


@pytest.mark.parametrize("method", ["best_of_n", "beam_search", "dvts"])
def test_recorded_generated_tokens_equal_what_the_engine_generated(runs, method):
    run, _ = runs[method]
    greedy = [req for call in run.backend.calls for req, _ in call if req.temperature == 0]
    assert bool(greedy) == (method != "best_of_n"), "lookahead rollouts must have run"
    engine_total = sum(out.num_tokens for call in run.backend.calls for _, out in call)
    assert sum(r.generated_tokens for r in run.results) == engine_total
    for problem, result in enumerate(run.results):
        assert result.generated_tokens == _generated(run, problem)
    if method != "best_of_n":
        # the returned paths are only part of it: pruned beams, dropped candidates, rollouts
        assert sum(r.generated_tokens for r in run.results) > sum(sum(r.completion_tokens) for r in run.results)


@pytest.mark.parametrize("method", ["best_of_n", "beam_search", "dvts"])
def test_recorded_prm_tokens_equal_what_the_prm_read(runs, method):
    run, forward_tokens = runs[method]
    if method == "best_of_n":
        assert forward_tokens == 0 and all(r.prm_tokens == 0 for r in run.results)
        return
    assert sum(r.prm_tokens for r in run.results) == forward_tokens > 0
    for problem, result in enumerate(run.results):
        reported = sum(
            count
            for (problems, _), tokens in zip(run.prm.calls, run.prm.tokens, strict=True)
            for p, per_problem in zip(problems, tokens, strict=True)
            if p == PROBLEMS[problem]
            for count in per_problem
        )
        assert result.prm_tokens == reported


def test_dvts_splits_the_compute_by_subtree(runs):
    run, _ = runs["dvts"]
    settings = SETTINGS["dvts"]
    subtrees = settings["n"] // settings["beam_width"]
    for problem, result in enumerate(run.results):
        assert len(result.subtree_tokens) == len(result.subtree_prm_tokens) == subtrees
        assert sum(result.subtree_tokens) == result.generated_tokens
        assert sum(result.subtree_prm_tokens) == result.prm_tokens
        for s in range(subtrees):
            # a subtree's requests (and its candidates' lookahead rollouts) carry its seeds
            seeds = {
                derive_seed(0, problem, s, c, it)
                for c in range(settings["beam_width"])
                for it in range(settings["num_iterations"])
            }
            assert result.subtree_tokens[s] == _generated(run, problem, seeds) > 0
    for method in ("best_of_n", "beam_search"):
        assert all(r.subtree_tokens is None for r in runs[method][0].results)
