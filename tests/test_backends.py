"""Generation backends on a real (tiny, random-weight) model: finish reasons, stop strings, token
counts, determinism and request order. The vLLM adapter's engine test needs a GPU with vLLM."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from sal_core.backends import GenerationRequest, load_backend
from sal_core.backends.transformers_backend import TransformersBackend, draw, find_stop, top_p_filter
from sal_core.backends.vllm_backend import to_generation_output
from sal_core.errors import ModelError
from sal_core.search.prompts import build_prompt
from sal_core.settings.jobs import ModelSettings

PROMPT = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
LONG_PROMPT = "Count the apples in the basket and then the pears in the bowl. " * 4


def settings(path: Path, **kw) -> ModelSettings:
    return ModelSettings(name="tiny", path=str(path), **kw)


@pytest.fixture(scope="module")
def backend(tiny_model_path: Path) -> TransformersBackend:
    return TransformersBackend(settings(tiny_model_path, batch_size=3, max_model_len=256))


def greedy(prompt: str = PROMPT, **kw) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, temperature=0.0, **kw)


def test_load_backend_picks_transformers(tiny_model_path: Path) -> None:
    assert isinstance(load_backend(settings(tiny_model_path)), TransformersBackend)


def test_missing_model_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does-not-exist"):
        TransformersBackend(settings(tmp_path / "does-not-exist"))


def test_unloadable_model_path_names_it(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="broken"):
        TransformersBackend(settings(tmp_path / "broken"))


def test_length_limit_counts_tokens(backend) -> None:
    [out] = backend.generate([greedy(max_tokens=7)])
    assert out.finish_reason == "length" and out.num_tokens == 7
    assert out.text and not out.text.startswith(PROMPT)


def test_greedy_is_repeatable_and_batch_independent(backend) -> None:
    alone = backend.generate([greedy(max_tokens=12)])[0]
    again = backend.generate([greedy(max_tokens=12)])[0]
    mixed = backend.generate([greedy(LONG_PROMPT, max_tokens=5), greedy(max_tokens=12), greedy("Hi", max_tokens=3)])
    assert alone == again == mixed[1]


def test_top_p_tiny_is_greedy(backend) -> None:
    sampled = backend.generate([GenerationRequest(PROMPT, temperature=1.0, top_p=1e-6, max_tokens=10, seed=3)])
    assert sampled == backend.generate([greedy(max_tokens=10)])


def test_seed_determinism_independent_of_batch(backend) -> None:
    req = GenerationRequest(PROMPT, temperature=1.0, max_tokens=10, seed=42)
    alone = backend.generate([req])[0]
    others = [GenerationRequest(LONG_PROMPT, temperature=0.7, max_tokens=4, seed=s) for s in range(4)]
    in_batch = backend.generate([*others[:2], req, *others[2:], greedy("Hi", max_tokens=2)])[2]
    assert alone == in_batch
    other_seed = backend.generate([GenerationRequest(PROMPT, temperature=1.0, max_tokens=10, seed=43)])[0]
    assert other_seed.text != alone.text


def test_rows_with_the_same_prompt_share_one_prefill(tiny_model_path: Path) -> None:
    """Best-of-N's n samples of a problem (and a DVTS subtree's candidates) share a prompt: its forward
    pass runs once, and every sample is still what it would be alone."""
    engine = TransformersBackend(settings(tiny_model_path, batch_size=16, max_model_len=256))
    shapes: list[tuple[int, ...]] = []
    hook = engine.model.register_forward_pre_hook(
        lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    samples = [GenerationRequest(PROMPT, temperature=1.0, max_tokens=6, seed=s) for s in range(6)]
    try:
        together = engine.generate([*samples, greedy(LONG_PROMPT, max_tokens=3)])
    finally:
        hook.remove()
    assert shapes[0][0] == 2  # two distinct prompts prefilled, not seven rows
    assert all(shape[1] == 1 for shape in shapes[1:])  # then one token per row and step
    assert together[:6] == [engine.generate([r])[0] for r in samples]
    assert len({o.text for o in together[:6]}) > 1  # the copies still sample apart


def test_order_preserved(backend) -> None:
    requests = [
        greedy(LONG_PROMPT, max_tokens=6),
        GenerationRequest("Hi", temperature=0.9, max_tokens=4, seed=1),
        greedy(PROMPT, max_tokens=5),
        GenerationRequest(LONG_PROMPT[:40], temperature=0.9, max_tokens=3, seed=2),
        greedy("x", max_tokens=2),
    ]
    together = backend.generate(requests)
    assert together == [backend.generate([r])[0] for r in requests]
    assert [o.num_tokens for o in together] == [6, 4, 5, 3, 2]


def test_stop_string_cut_and_kept(backend) -> None:
    full = backend.generate([greedy(max_tokens=20)])[0]
    stop = full.text[8:11]
    assert stop.strip(), f"need a visible stop string in {full.text!r}"
    [out] = backend.generate([greedy(max_tokens=20, stop=("never-appears", stop))])
    expected = full.text[: full.text.find(stop) + len(stop)]
    assert out.finish_reason == "stop" and out.text == expected
    assert 0 < out.num_tokens < 20
    # the tokens counted are exactly those needed to produce the stop
    shorter = backend.generate([greedy(max_tokens=out.num_tokens - 1)])[0].text if out.num_tokens > 1 else ""
    assert stop not in shorter


def test_eos_ends_without_eos_text(tiny_model_path: Path, tmp_path: Path) -> None:
    """Declare a token the model greedily produces (not as its first token) an extra EOS: generation
    must stop there with finish_reason eos, the EOS token counted but its text left out."""
    probe = TransformersBackend(settings(tiny_model_path))
    ids = probe.tokenizer(PROMPT, add_special_tokens=False, return_tensors="pt")["input_ids"]
    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(8):
            tokens.append(int(probe.model(input_ids=ids).logits[0, -1].argmax()))
            ids = torch.cat([ids, torch.tensor([[tokens[-1]]])], dim=1)
    k = next((i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i]), None)
    assert k is not None, f"greedy continuation repeats one token: {tokens}"
    model_dir = tmp_path / "tiny-eos"
    shutil.copytree(tiny_model_path, model_dir)
    gen_config = json.loads((model_dir / "generation_config.json").read_text())
    gen_config["eos_token_id"] = [gen_config["eos_token_id"], tokens[k]]
    (model_dir / "generation_config.json").write_text(json.dumps(gen_config))
    [out] = TransformersBackend(settings(model_dir)).generate([greedy(max_tokens=10)])
    assert out.finish_reason == "eos" and out.num_tokens == k + 1
    assert out.text == probe.tokenizer.decode(tokens[:k], skip_special_tokens=True)


def test_prompt_filling_context_does_not_crash(tiny_model_path: Path) -> None:
    small = TransformersBackend(settings(tiny_model_path, max_model_len=20))
    n_prompt = len(small.tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    too_long = PROMPT * 3
    outs = small.generate([greedy(too_long, max_tokens=5), greedy(PROMPT, max_tokens=50), greedy("Hi", max_tokens=3)])
    assert outs[0].text == "" and outs[0].num_tokens == 0 and outs[0].finish_reason == "length"
    assert outs[1].finish_reason == "length" and outs[1].num_tokens == 20 - n_prompt
    assert outs[2].num_tokens == 3


def test_empty_request_list_and_empty_prompt(backend) -> None:
    assert backend.generate([]) == []
    [out] = backend.generate([greedy("", max_tokens=3)])
    assert out.num_tokens == 3 and out.finish_reason == "length"


def test_find_stop_earliest_and_kept() -> None:
    assert find_stop("ab\n\ncd\n\n", ["\n\n"]) == 4
    assert find_stop("x END y STOP", ["STOP", "END"]) == 5
    assert find_stop("nothing", ["\n\n"]) is None


def test_top_p_filter_keeps_nucleus() -> None:
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.25, 0.25, 0.25, 0.25]])
    kept = top_p_filter(probs, torch.tensor([0.75, 1.0]))
    assert kept[0].tolist() == pytest.approx([0.0, 0.5, 0.3, 0.0])
    assert kept[1].tolist() == pytest.approx([0.25] * 4)


def test_draw_follows_distribution_and_seeds() -> None:
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3]).repeat(4000, 1)
    generators = [torch.Generator().manual_seed(i) for i in range(4000)]
    tokens = draw(probs, generators)
    freq = torch.bincount(tokens, minlength=4).double() / 4000
    assert freq.tolist() == pytest.approx([0.1, 0.0, 0.6, 0.3], abs=0.03)
    again = draw(probs[:50], [torch.Generator().manual_seed(i) for i in range(50)])
    assert torch.equal(again, tokens[:50])


@pytest.mark.parametrize(
    ("finish", "stop_reason", "expected"),
    [("length", None, "length"), ("stop", "\n\n", "stop"), ("stop", None, "eos"), ("stop", 2, "eos")],
)
def test_vllm_output_mapping(finish: str, stop_reason, expected: str) -> None:
    out = to_generation_output("## Step 1: add\n\n", [10, 11, 12], finish, stop_reason)
    assert out.finish_reason == expected and out.num_tokens == 3 and out.text == "## Step 1: add\n\n"


def test_vllm_mapping_rejects_unfinished() -> None:
    with pytest.raises(ModelError, match="finish_reason"):
        to_generation_output("", [], None, None)


@pytest.mark.slow
def test_smollm2_answers_and_throughput(smollm2_path: Path) -> None:
    real = load_backend(settings(smollm2_path, batch_size=16))
    prompt = build_prompt(real.tokenizer, "What is 2 + 3?", "", None)
    [answer] = real.generate([greedy(prompt, max_tokens=40)])
    assert "5" in answer.text and answer.finish_reason == "eos"
    requests = [GenerationRequest(prompt, temperature=0.8, max_tokens=32, seed=s) for s in range(16)]
    start = time.perf_counter()
    outs = real.generate(requests)
    seconds = time.perf_counter() - start
    tokens = sum(o.num_tokens for o in outs)
    print(f"\nSmolLM2-135M transformers backend: {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tokens/s")
    assert all(o.text for o in outs)
