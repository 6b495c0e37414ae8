"""Prompt text to token ids, the one way every engine gets them.

vLLM tokenizes a text prompt with the tokenizer's special tokens (Llama 3 adds `<|begin_of_text|>`),
so a chat template that already renders a BOS gave two BOS tokens under vLLM and one under
transformers. Every backend now receives ids from `prompt_token_ids`: when the tokenizer adds a BOS
by default (as vLLM would), the ids start with exactly one BOS whatever the template rendered;
tokenizers that add none (Qwen2.5, SmolLM2) get the text's own tokens, nothing prepended.
"""

from __future__ import annotations

from typing import Any


def adds_bos(tokenizer: Any) -> bool:
    """Whether encoding with special tokens prepends the BOS token (Llama, Mistral: yes; Qwen: no)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def prompt_token_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a full prompt (chat template rendered, partial solution appended).

    Exactly one leading BOS when the tokenizer adds one by default; an empty prompt becomes the BOS
    (or the pad/eos token) so the model has a position to predict from.
    """
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = tokenizer.bos_token_id
    if adds_bos(tokenizer):
        while ids and ids[0] == bos:
            ids.pop(0)
        ids.insert(0, bos)
    if not ids:
        fallback = bos if bos is not None else tokenizer.pad_token_id
        ids = [fallback if fallback is not None else tokenizer.eos_token_id]
    return ids
