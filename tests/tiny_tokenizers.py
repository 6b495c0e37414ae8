"""Tiny real tokenizers built in-process, for the tests of prompt tokenization (no download).

`word_tokenizer` is a word-level fast tokenizer whose encoder prepends <s> with special tokens on,
as Llama's does; its chat template renders `{{ bos_token }}` (like Llama 3's) or not (like
search-and-learn's Llama template). `tiny_model_folder` saves a random tiny Llama beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sal_core.search.prompts import build_prompt

SPECIAL = ["<s>", "</s>", "<unk>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
WORDS = ["What", "is", "2", "+", "3", "?", "Step", "1", ":", "Add", "the", "numbers", ".", "5", "Solve", "it"]
TURNS = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
TEMPLATES = {
    "renders-bos": "{{ bos_token }}" + TURNS + "{% if add_generation_prompt %}<|assistant|>{% endif %}",
    "no-bos": TURNS + "{% if add_generation_prompt %}<|assistant|>{% endif %}",
}
PROBLEM = "What is 2 + 3 ?"
PARTIAL = "Step 1 : Add the numbers ."


def word_tokenizer(template: str) -> PreTrainedTokenizerFast:
    """A real fast tokenizer that prepends <s> when encoding with special tokens, as Llama's does."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(SPECIAL + WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(SPECIAL)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        chat_template=TEMPLATES[template],
    )


def tiny_model_folder(tokenizer: Any, folder: Path, hidden_size: int = 16) -> Path:
    """A random tiny Llama saved with `tokenizer`, loadable by the transformers engine (vLLM's CPU
    attention needs heads of 32 dimensions or more: hidden_size=128)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def full_prompt(tokenizer: Any) -> str:
    """A chat prompt (system, user, generation prompt) with a partial solution, as search builds it."""
    return build_prompt(tokenizer, PROBLEM, "Solve it", None) + PARTIAL
