"""Shared prefixes computed once (sal_core.backends.shared_prefix): how rows are grouped, and that a
batch run in two passes (prefixes, then suffixes over their cache) gives what one pass gives, for a
PRM's step scores and for a policy's samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from sal_core.backends import GenerationRequest
from sal_core.backends import transformers_backend as tb
from sal_core.backends.shared_prefix import group_rows, plain_cost, worth_splitting
from sal_core.backends.transformers_backend import TransformersBackend
from sal_core.settings.jobs import ModelSettings

SYSTEM = list(range(100, 120))  # 20 tokens every row begins with (a system prompt)
BEAM_A, BEAM_B = SYSTEM + [1] * 30, SYSTEM + [2] * 30  # two beams, 50 tokens each so far


def test_siblings_share_their_beam_not_only_the_system_prompt() -> None:
    seqs = [BEAM_B + [9, 9], BEAM_A + [5, 6], BEAM_B + [5], BEAM_A + [7, 8]]
    groups = group_rows(seqs)
    # two groups sharing 50 tokens save 2 * 50; one group sharing the 20 system tokens saves 3 * 20
    assert sorted(map(sorted, groups.members)) == [[0, 2], [1, 3]]
    assert groups.lengths == [50, 50]
    assert groups.cost(seqs) < plain_cost(seqs)


def test_every_row_keeps_a_token_of_its_own() -> None:
    same = [BEAM_A, list(BEAM_A), BEAM_A + [3]]
    groups = worth_splitting(same)
    assert groups is not None and groups.lengths == [len(BEAM_A) - 1]


def test_nothing_worth_sharing_is_one_pass() -> None:
    assert worth_splitting([[1, 2, 3], [4, 5, 6]]) is None
    assert worth_splitting([SYSTEM + [1], [7] + SYSTEM]) is None
    assert worth_splitting([BEAM_A]) is None


def test_prm_two_passes_equal_one(judge, monkeypatch) -> None:
    """Step scores with shared prefixes (a problem, identical first steps, whole duplicate completions,
    so some score positions lie inside a shared prefix) equal those of one pass per batch."""
    problem = "Tom has 3 apples and buys 4 more. How many apples does he have now?"
    first = "## Step 1: Start with 3 apples.\n\n"
    completions = [
        first + "## Step 2: Add 4 to get 7.\n\nThe answer is 7.",
        first + "## Step 2: He has 3 + 4 = 7 apples.",
        first + "## Step 2: Add 4 to get 7.\n\nThe answer is 7.",
        "## Step 1: 3 + 4 = 7.",
    ]
    encoded = [judge.encode_completion(problem, c)[0] for c in completions]
    assert any(groups is not None for _, groups in judge.plan_batches(encoded)), "the shared path must run"
    shared = judge.score([problem], [completions])[0]
    monkeypatch.setattr(judge, "shares_prefixes", False)
    assert all(groups is None for _, groups in judge.plan_batches(encoded))
    alone = judge.score([problem], [completions])[0]
    for got, want in zip(shared, alone, strict=True):
        assert got == pytest.approx(want, abs=1e-5)


def test_policy_prefill_shares_the_system_prompt(tiny_model_path: Path, monkeypatch) -> None:
    """Prompts with a common system prompt prefill it once; greedy and seeded samples stay what one
    padded pass gives."""
    engine = TransformersBackend(ModelSettings(name="tiny", path=str(tiny_model_path), max_model_len=512))
    system = "You solve math problems step by step and box the final answer. " * 3
    requests = [
        GenerationRequest(system + question, temperature=t, max_tokens=6, seed=7)
        for question in ("What is 2 + 3?", "What is 10 - 4?", "Name a prime.")
        for t in (0.0, 1.0)
    ]
    widths: list[tuple[int, ...]] = []
    hook = engine.model.register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        shared = engine.generate(requests)
    finally:
        hook.remove()
    assert widths[0][0] == 1 and widths[0][1] > 20  # the system prompt, once
    assert widths[1][0] == 3 and widths[1][1] < widths[0][1]  # then each distinct prompt's own end
    monkeypatch.setattr(tb, "worth_splitting", lambda seqs: None)
    assert engine.generate(requests) == shared
