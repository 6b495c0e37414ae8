"""Every PRM family on a tiny random model of its real architecture, saved to disk and loaded through
`load_prm` like a real checkpoint: one score per step in [0, 1], positions proven by prefix scoring,
batch invariance, one forward pass per batch, truncation, and clear load errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForTokenClassification,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForTokenClassification,
)

from sal_core.errors import ConfigError, ModelError
from sal_core.pipeline.prepare_model import TINY_SHAPE
from sal_core.prm import load_prm, split_steps
from sal_core.settings.jobs import PRMSettings

PROBLEM = "What is the sum of the first 4 positive odd numbers?"
SOLUTIONS = [
    "## Step 1: List them\nThe numbers are 1, 3, 5 and 7.\n\n## Step 2: Add\n1 + 3 + 5 + 7 = 16.\n\n"
    "Therefore, the final answer is: $\\boxed{16}$. I hope it is correct.",
    "The sum is 4^2.\n\nSo 16.",
    "Just guess: 10.",
    "Step A. Odd numbers are 2k-1.\n\nStep B. Sum over k=1..4 of (2k-1) = 2*10 - 4 = 16.\n\nStep C. Check: "
    "1+3=4, 4+5=9, 9+7=16.\n\nStep D. Done, answer 16 ки <extra_0> + -",
]
# large weights so that scores differ clearly between positions (a wrong position would show)
TINY = dict(TINY_SHAPE, max_position_embeddings=2048, initializer_range=0.3)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    """SmolLM2's real tokenizer and chat template plus the step tags Math-Shepherd and Qwen2.5-Math use."""
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    tok.add_tokens(["ки", "<extra_0>"], special_tokens=True)
    return tok


def _save(model, tokenizer, folder: Path) -> Path:
    torch.manual_seed(0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _build(kind: str, tokenizer, folder: Path) -> Path:
    torch.manual_seed(7)
    vocab = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if kind == "rlhflow":
        return _save(LlamaForCausalLM(LlamaConfig(**TINY, **vocab)), tokenizer, folder)
    if kind == "math-shepherd":
        return _save(MistralForCausalLM(MistralConfig(**TINY, **vocab)), tokenizer, folder)
    if kind == "skywork":
        config = Qwen2Config(**TINY, **vocab)
        _save(Qwen2ForCausalLM(config), tokenizer, folder)
        weights = load_file(folder / "model.safetensors")
        weights["v_head.summary.weight"] = torch.randn(1, config.hidden_size)
        weights["v_head.summary.bias"] = torch.randn(1)
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        return folder
    if kind == "qwen2.5-math":
        return _save(Qwen2ForTokenClassification(Qwen2Config(**TINY, **vocab, num_labels=2)), tokenizer, folder)
    if kind == "trl":
        return _save(LlamaForTokenClassification(LlamaConfig(**TINY, **vocab, num_labels=2)), tokenizer, folder)
    raise AssertionError(kind)


KINDS = ["rlhflow", "math-shepherd", "skywork", "qwen2.5-math", "trl"]


@pytest.fixture(scope="module")
def prm_paths(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prms")
    return {kind: _build(kind, tokenizer, root / kind) for kind in KINDS}


def _prm(paths: dict[str, Path], kind: str, **overrides):
    settings = dict(name=f"tiny-{kind}", type=kind, path=str(paths[kind]), device="cpu", batch_size=4)
    return load_prm(PRMSettings(**{**settings, **overrides}))


@pytest.fixture(scope="module")
def prms(prm_paths):
    return {kind: _prm(prm_paths, kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_one_score_per_step_in_unit_interval(prms, kind: str) -> None:
    scores = prms[kind].score([PROBLEM, "Second problem?"], [SOLUTIONS, [SOLUTIONS[1], ""]])
    assert [len(s) for s in scores] == [len(SOLUTIONS), 2]
    for got, solution in zip(scores[0] + scores[1], SOLUTIONS + [SOLUTIONS[1], ""], strict=True):
        assert len(got) == len(split_steps(solution))
        assert all(0.0 <= x <= 1.0 for x in got)
    assert scores[1][1] == []


@pytest.mark.parametrize("kind", KINDS)
def test_step_k_of_full_pass_equals_scoring_the_first_k_steps(prms, kind: str) -> None:
    """Reading every step from one pass gives exactly what a pass over the prefix gives: the score
    positions are the right tokens (the models are causal, so later steps cannot leak in)."""
    prm = prms[kind]
    steps = split_steps(SOLUTIONS[3])
    full = prm.score([PROBLEM], [[SOLUTIONS[3]]])[0][0]
    prefixes = ["\n\n".join(steps[: k + 1]) for k in range(len(steps))]
    alone = [s[-1] for s in prm.score([PROBLEM], [prefixes])[0]]
    assert full == pytest.approx(alone, abs=1e-5)
    assert max(full) - min(full) > 1e-3, "scores must differ between steps, or the check proves nothing"


@pytest.mark.parametrize("kind", KINDS)
def test_batch_invariance(prms, kind: str) -> None:
    prm = prms[kind]
    alone = [prm.score([PROBLEM], [[s]])[0][0] for s in SOLUTIONS]
    batched = prm.score([PROBLEM], [SOLUTIONS * 2])[0]
    for got, want in zip(batched, alone * 2, strict=True):
        assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("kind", ["rlhflow", "qwen2.5-math"])
def test_one_forward_call_per_batch_not_per_step(prms, kind: str) -> None:
    prm = prms[kind]
    calls = []
    handle = prm.forward_module.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        completions = [SOLUTIONS * 2, SOLUTIONS[:2]]  # 10 completions, batch_size 4
        scores = prm.score([PROBLEM, PROBLEM], completions)
    finally:
        handle.remove()
    n_steps = sum(len(s) for per_problem in scores for s in per_problem)
    # 3 batches; a judge that shares prefixes runs a batch in two passes (prefixes, then suffixes)
    per_batch = 2 if prm.shares_prefixes else 1
    assert 3 <= len(calls) <= 3 * per_batch < n_steps


@pytest.mark.parametrize("kind", ["rlhflow", "skywork"])
def test_truncation_keeps_one_score_per_step(prm_paths, prms, kind: str, caplog) -> None:
    full = prms[kind].score([PROBLEM], [[SOLUTIONS[3]]])[0][0]
    prm = _prm(prm_paths, kind, max_length=len(prms[kind].encode(PROBLEM, split_steps(SOLUTIONS[3])[:2]).input_ids))
    with caplog.at_level(logging.WARNING):
        cut = prm.score([PROBLEM], [[SOLUTIONS[3]]])[0][0]
    assert "truncated" in caplog.text
    assert len(cut) == len(full) == 4
    assert cut[:2] == pytest.approx(full[:2], abs=1e-5)
    assert cut[2:] == [cut[1], cut[1]]


def test_nothing_fits_scores_zero(prm_paths) -> None:
    prm = _prm(prm_paths, "trl", max_length=3)
    assert prm.score([PROBLEM], [[SOLUTIONS[1]]]) == [[[0.0, 0.0]]]


def test_rlhflow_reads_the_token_before_each_plus(prms, tokenizer) -> None:
    prm = prms["rlhflow"]
    encoded = prm.encode(PROBLEM, split_steps(SOLUTIONS[3]))
    plus = tokenizer.encode("+", add_special_tokens=False)[-1]
    assert [encoded.input_ids[p + 1] for p in encoded.positions] == [plus] * 4
    # a "+" inside a step ("1+3=4") is not a score position
    assert encoded.input_ids.count(plus) > 4


def test_tag_inside_a_step_is_not_a_step_boundary(prms) -> None:
    encoded = prms["math-shepherd"].encode(PROBLEM, split_steps(SOLUTIONS[3]))
    assert len(encoded.positions) == 4
    assert encoded.input_ids.count(prms["math-shepherd"].tag_id) == 5


def test_skywork_without_value_head_is_a_clear_error(prm_paths, tokenizer, tmp_path: Path) -> None:
    folder = _save(Qwen2ForCausalLM(Qwen2Config(**TINY, vocab_size=len(tokenizer))), tokenizer, tmp_path / "m")
    with pytest.raises(ModelError, match=r"no value head .*v_head\.summary\.weight"):
        load_prm(PRMSettings(name="sky", type="skywork", path=str(folder), device="cpu"))


def test_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-prm"
    with pytest.raises(ModelError, match="no-such-prm"):
        load_prm(PRMSettings(name="x", type="rlhflow", path=str(missing), device="cpu"))


def test_settings_are_checked_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prm.dtype"):
        load_prm(PRMSettings(name="x", type="rlhflow", path=str(tmp_path / "absent"), dtype="float8"))
    with pytest.raises(ConfigError, match="prm.type"):
        load_prm(PRMSettings(name="x", type="orm", path=str(tmp_path / "absent")))


def test_rlhflow_matches_one_pass_per_step_reference(prm_paths, prms, tokenizer) -> None:
    """RLHFlow's reference recipe (search-and-learn's non-default `_score_single`), one full forward
    per step: the conversation up to step k, then the assistant header; P("+") from the next-token
    logits. Our single pass must give the same."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(prm_paths["rlhflow"]).eval()
    plus, minus = (tokenizer.encode(t, add_special_tokens=False)[-1] for t in "+-")
    steps = split_steps(SOLUTIONS[3])
    reference, conversation = [], []
    for k, step in enumerate(steps):
        conversation.append({"role": "user", "content": f"{PROBLEM} {step}" if k == 0 else step})
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
        with torch.no_grad():
            logits = model(ids).logits[0, -1, [plus, minus]]
        reference.append(logits.softmax(-1)[0].item())
        conversation.append({"role": "assistant", "content": "+"})
    assert prms["rlhflow"].score([PROBLEM], [[SOLUTIONS[3]]])[0][0] == pytest.approx(reference, abs=1e-5)


def test_math_shepherd_matches_model_card_recipe(prm_paths, prms, tokenizer) -> None:
    """The model card: full logits, softmax over ("+", "-"), read where input_ids == the tag id."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(prm_paths["math-shepherd"]).eval()
    plus, minus = (tokenizer.encode(t, add_special_tokens=False)[-1] for t in "+-")
    tag = tokenizer.encode("ки", add_special_tokens=False)[-1]
    steps = split_steps(SOLUTIONS[0])
    ids = torch.tensor([tokenizer.encode(PROBLEM + " " + "\n".join(f"{s} ки" for s in steps))])
    with torch.no_grad():
        probs = model(ids).logits[0, :, [plus, minus]].softmax(-1)[:, 0]
    reference = probs[ids[0] == tag].tolist()
    assert prms["math-shepherd"].score([PROBLEM], [[SOLUTIONS[0]]])[0][0] == pytest.approx(reference, abs=1e-5)


def test_a_judge_of_the_policy_checkpoint_reuses_its_weights(tiny_model_path: Path):
    """The embedded default judges with its own policy model: one copy in memory, the same scores."""
    from sal_core.backends.transformers_backend import TransformersBackend
    from sal_core.settings.jobs import ModelSettings

    backend = TransformersBackend(ModelSettings(name="tiny", path=str(tiny_model_path), device="cpu"))
    settings = PRMSettings(name="judge", type="rlhflow", path=str(tiny_model_path), device="cpu")
    shared = load_prm(settings, reuse=backend.weights)
    alone = load_prm(settings)
    assert shared.forward_module is backend.model.base_model and alone.forward_module is not shared.forward_module
    problems, completions = [PROBLEM], [SOLUTIONS[:2]]
    assert shared.score(problems, completions) == alone.score(problems, completions)
    float16 = load_prm(PRMSettings(**{**settings.__dict__, "dtype": "float16"}), reuse=backend.weights)
    assert float16.forward_module is not backend.model.base_model  # another dtype: its own copy
