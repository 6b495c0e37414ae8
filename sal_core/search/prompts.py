"""The prompt text a policy model sees for one problem.

Every backend and search method builds prompts here, so the same problem gives the same prompt
whichever engine runs it; the search then appends partial solutions to this text.
"""

from __future__ import annotations

from typing import Any

from sal_core.errors import ConfigError

#: `model.chat_template` value that turns chat formatting off (base models without a template)
NO_TEMPLATE = "none"


def build_prompt(tokenizer: Any, problem: str, system_prompt: str, chat_template: str | None) -> str:
    """Prompt text ending where the assistant's answer starts.

    chat_template None uses the tokenizer's own template, "none" gives plain text (system prompt,
    blank line, problem, blank line), anything else is a Jinja chat template string. An empty
    system prompt is left out rather than sent as an empty message.
    """
    if chat_template == NO_TEMPLATE:
        parts = [system_prompt, problem] if system_prompt else [problem]
        return "\n\n".join(parts) + "\n\n"
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": problem})
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("model.chat_template: the tokenizer has no chat template; set a Jinja template or 'none'")
    try:
        return tokenizer.apply_chat_template(
            messages, chat_template=chat_template, tokenize=False, add_generation_prompt=True
        )
    except Exception as err:  # jinja2 syntax/undefined errors come from a user-written template
        if chat_template is None:
            raise
        raise ConfigError(f"model.chat_template: template failed to render ({err.__class__.__name__}: {err})") from err
