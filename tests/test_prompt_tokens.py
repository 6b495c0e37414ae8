"""One tokenization, exactly one BOS: both engines receive the ids of `tokens.prompt_token_ids`.

Tiny real tokenizers are built in-process: a word-level tokenizer whose encoder adds a BOS (like
Llama's) with a chat template that renders `{{ bos_token }}` (like Llama 3's) and one that does not
(like search-and-learn's Llama template), and SmolLM2's tokenizer, which adds none (like Qwen2.5's).
vLLM's text path tokenizes with special tokens, so it would give two BOS after the first template;
the transformers engine used to tokenize without, so it gave none after the second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_tokenizers import TEMPLATES, WORDS, full_prompt, tiny_model_folder, word_tokenizer

from sal_core.backends import GenerationRequest
from sal_core.backends.tokens import adds_bos, batch_prompt_token_ids, prepare_prompts, prompt_token_ids
from sal_core.backends.transformers_backend import TransformersBackend
from sal_core.backends.vllm_backend import plan_call, sampling_kwargs
from sal_core.search.steps import token_budget
from sal_core.settings.jobs import ModelSettings


@pytest.fixture(scope="module")
def engines(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, TransformersBackend]:
    """The transformers engine on each kind of tokenizer (SmolLM2's adds no BOS)."""
    folders = {"smollm2": tiny_model_path}
    for name in TEMPLATES:
        folders[name] = tiny_model_folder(word_tokenizer(name), tmp_path_factory.mktemp(name))
    return {
        name: TransformersBackend(ModelSettings(name=name, path=str(folder), device="cpu", max_model_len=64))
        for name, folder in folders.items()
    }


def ids_the_model_received(engine: TransformersBackend, prompt: str) -> list[int]:
    """The unpadded input ids of the engine's first forward pass on `prompt` (read by a hook)."""
    seen: list[list[int]] = []

    def hook(module, args, kwargs):
        if not seen:
            ids, mask = kwargs["input_ids"][0], kwargs["attention_mask"][0]
            seen.append(ids[mask.bool()].tolist())

    handle = engine.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        engine.generate([GenerationRequest(prompt, temperature=0.0, max_tokens=1)])
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_one_bos_whatever_the_template(template: str) -> None:
    tokenizer = word_tokenizer(template)
    text = full_prompt(tokenizer)
    assert text.startswith("<s>") == (template == "renders-bos")
    ids = prompt_token_ids(tokenizer, text)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    # everything after the BOS is the text's own tokens
    assert ids[1:] == tokenizer(text.removeprefix("<s>"), add_special_tokens=False)["input_ids"]


def test_tokenizer_that_adds_no_bos_gets_the_text_tokens_only(engines) -> None:
    tokenizer = engines["smollm2"].tokenizer
    text = full_prompt(tokenizer)
    assert not adds_bos(tokenizer)
    assert prompt_token_ids(tokenizer, text) == tokenizer(text, add_special_tokens=False)["input_ids"]
    # what vLLM's text path would have given too: nothing to fix for such models
    assert prompt_token_ids(tokenizer, text) == tokenizer(text)["input_ids"]


@pytest.mark.parametrize("name", ["renders-bos", "no-bos", "smollm2"])
def test_both_engines_receive_the_same_ids(engines, name: str) -> None:
    engine = engines[name]
    tokenizer = engine.tokenizer
    text = full_prompt(tokenizer)
    vllm_ids = plan_call(tokenizer, [GenerationRequest(text, 0.7)], engine.max_model_len).prepared[0].prompt_token_ids
    transformers_ids = ids_the_model_received(engine, text)
    assert vllm_ids == transformers_ids == prompt_token_ids(tokenizer, text)
    bos = tokenizer.bos_token_id
    if adds_bos(tokenizer):
        assert transformers_ids[0] == bos and transformers_ids.count(bos) == 1
    else:
        assert transformers_ids == tokenizer(text)["input_ids"]


@pytest.mark.parametrize("name", ["renders-bos", "no-bos", "smollm2"])
def test_budget_counts_every_token_the_engine_receives(engines, name: str) -> None:
    engine = engines[name]
    text = full_prompt(engine.tokenizer)
    length = len(prompt_token_ids(engine.tokenizer, text))
    assert engine.prompt_length(text) == length
    room = engine.max_model_len - length
    assert token_budget(engine.max_model_len, engine.prompt_length(text), 1000) == room
    assert token_budget(engine.max_model_len, engine.prompt_length(text), 3) == 3
    call = plan_call(engine.tokenizer, [GenerationRequest(text, 0.7, max_tokens=1000)], engine.max_model_len)
    assert call.prepared[0].max_tokens == room


def test_prompts_without_room_are_answered_without_running() -> None:
    tokenizer = word_tokenizer("no-bos")
    short, long = "What is 2", " ".join(WORDS * 3)
    requests = [GenerationRequest(long, 0.5), GenerationRequest(short, 0.5, max_tokens=100)]
    prepared, no_room = prepare_prompts(tokenizer, requests, max_model_len=20)
    assert no_room == [0]
    assert [(p.index, p.max_tokens) for p in prepared] == [(1, 20 - 4)]  # <s> What is 2
    call = plan_call(tokenizer, requests, 20)
    assert call.no_room == no_room and call.prepared == prepared and call.size == 2


def test_empty_prompt_still_has_a_position_to_predict_from() -> None:
    tokenizer = word_tokenizer("no-bos")
    assert prompt_token_ids(tokenizer, "") == [tokenizer.bos_token_id]
    assert batch_prompt_token_ids(tokenizer, ["", "<s><s>What"]) == [[0], [0, vocab_id(tokenizer, "What")]]


def vocab_id(tokenizer: Any, word: str) -> int:
    return tokenizer.convert_tokens_to_ids(word)


def test_adds_bos_is_asked_once_per_tokenizer() -> None:
    tokenizer = word_tokenizer("no-bos")
    calls = []
    original = tokenizer._tokenizer.post_processor
    assert adds_bos(tokenizer)
    tokenizer._tokenizer.post_processor = None  # a changed tokenizer object keeps its first answer
    calls.append(adds_bos(tokenizer))
    tokenizer._tokenizer.post_processor = original
    assert calls == [True]


def test_sampling_kwargs_carry_each_requests_settings() -> None:
    request = GenerationRequest("x", temperature=0.6, top_p=0.9, max_tokens=99, stop=("\n\n",), seed=7)
    assert sampling_kwargs(request, 42) == {
        "n": 1,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_tokens": 42,
        "stop": ["\n\n"],
        "seed": 7,
        "include_stop_str_in_output": True,
    }
    assert sampling_kwargs(GenerationRequest("x", 0.0), 5)["stop"] is None
