"""Prompt modes: the tokenizer's own template, plain text, and a custom Jinja template."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from sal_core.errors import ConfigError
from sal_core.search.prompts import build_prompt
from sal_core.settings.jobs import DEFAULT_SYSTEM_PROMPT


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    return AutoTokenizer.from_pretrained(tiny_model_path)


def test_own_template_has_system_user_and_generation_prompt(tokenizer) -> None:
    prompt = build_prompt(tokenizer, "What is 2 + 3?", DEFAULT_SYSTEM_PROMPT, None)
    assert prompt == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_default_system_prompt_asks_for_boxed_steps() -> None:
    assert "## Step 1:" in DEFAULT_SYSTEM_PROMPT
    assert "Therefore, the final answer is: $\\boxed{answer}$" in DEFAULT_SYSTEM_PROMPT


def test_plain_text_mode(tokenizer) -> None:
    assert build_prompt(tokenizer, "Add 1 and 1.", "Be brief.", "none") == "Be brief.\n\nAdd 1 and 1.\n\n"
    assert build_prompt(tokenizer, "Add 1 and 1.", "", "none") == "Add 1 and 1.\n\n"


def test_custom_jinja_template(tokenizer) -> None:
    template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    prompt = build_prompt(tokenizer, "Q?", "S.", template)
    assert prompt == "[system] S.\n[user] Q?\n[assistant] "


def test_broken_custom_template_names_the_key(tokenizer) -> None:
    with pytest.raises(ConfigError, match="model.chat_template"):
        build_prompt(tokenizer, "Q?", "S.", "{% for m in messages %}")


def test_tokenizer_without_template_needs_one(tiny_model_path: Path) -> None:
    base_tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    base_tokenizer.chat_template = None  # as for a base model
    with pytest.raises(ConfigError, match="no chat template"):
        build_prompt(base_tokenizer, "Q?", "S.", None)
    assert build_prompt(base_tokenizer, "Q?", "S.", "none") == "S.\n\nQ?\n\n"
