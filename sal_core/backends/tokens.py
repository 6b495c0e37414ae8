"""Prompt text to token ids, the one way every engine gets them.

vLLM tokenizes a text prompt with the tokenizer's special tokens (Llama 3 adds `<|begin_of_text|>`),
so a chat template that already renders a BOS gave two BOS tokens under vLLM and one under
transformers. Every backend now receives ids from `prompt_token_ids`: when the tokenizer adds a BOS
by default (as vLLM would), the ids start with exactly one BOS whatever the template rendered;
tokenizers that add none (Qwen2.5, SmolLM2) get the text's own tokens, nothing prepended.

`prepare_prompts` adds the context-window budget both in-process engines apply the same way.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sal_core.backends.base import GenerationRequest

#: adds_bos per tokenizer object: asking costs one encode call, and search asks for every beam
_ADDS_BOS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _probe_adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def adds_bos(tokenizer: Any) -> bool:
    """Whether encoding with special tokens prepends the BOS token (Llama, Mistral: yes; Qwen: no)."""
    try:
        return _ADDS_BOS[tokenizer]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: ask every time
        return _probe_adds_bos(tokenizer)
    value = _ADDS_BOS[tokenizer] = _probe_adds_bos(tokenizer)
    return value


def _fix_start(tokenizer: Any, ids: list[int], bos_first: bool) -> list[int]:
    bos = tokenizer.bos_token_id
    if bos_first:
        start = 0
        while start < len(ids) and ids[start] == bos:
            start += 1
        ids = [bos, *ids[start:]]
    if not ids:
        fallback = bos if bos is not None else tokenizer.pad_token_id
        ids = [fallback if fallback is not None else tokenizer.eos_token_id]
    return ids


def batch_prompt_token_ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """`prompt_token_ids` of many prompts with one tokenizer call (fast tokenizers batch in Rust)."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos_first = adds_bos(tokenizer)
    return [_fix_start(tokenizer, list(ids), bos_first) for ids in encoded]


def prompt_token_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a full prompt (chat template rendered, partial solution appended).

    Exactly one leading BOS when the tokenizer adds one by default; an empty prompt becomes the BOS
    (or the pad/eos token) so the model has a position to predict from.
    """
    return batch_prompt_token_ids(tokenizer, [text])[0]


@dataclass(frozen=True)
class PreparedPrompt:
    """A request as an engine runs it: its position in the call, its prompt ids, and the tokens it
    may generate (`request.max_tokens` clipped to what is left of the context window)."""

    index: int
    request: GenerationRequest
    prompt_token_ids: list[int]
    max_tokens: int


def prepare_prompts(
    tokenizer: Any, requests: Sequence[GenerationRequest], max_model_len: int
) -> tuple[list[PreparedPrompt], list[int]]:
    """The requests that fit, with ids and budgets, and the indices of those with no room left
    (the engines answer those with an empty 'length' output, without running them)."""
    prepared: list[PreparedPrompt] = []
    no_room: list[int] = []
    texts = [r.prompt for r in requests if r.prompt_token_ids is None]
    encoded = iter(batch_prompt_token_ids(tokenizer, texts) if texts else [])
    ids_per_request = [list(r.prompt_token_ids) if r.prompt_token_ids is not None else next(encoded) for r in requests]
    for index, (request, ids) in enumerate(zip(requests, ids_per_request, strict=True)):
        budget = min(request.max_tokens, max_model_len - len(ids))
        if budget <= 0:
            no_room.append(index)
        else:
            prepared.append(PreparedPrompt(index, request, ids, budget))
    return prepared, no_room
