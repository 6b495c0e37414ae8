"""The prompt text a policy model sees for one problem.

Every backend and search method builds prompts here, so the same problem gives the same prompt
whichever engine runs it; the search then appends partial solutions to this text.
"""

from __future__ import annotations

from typing import Any

from sal_core.errors import ConfigError

#: `model.chat_template` value that turns chat formatting off (base models without a template)
NO_TEMPLATE = "none"

#: `model.chat_template` value naming search-and-learn's Llama 3 template (its `custom_chat_template`,
#: src/sal/config.py, used by its Llama-3.2 recipes), written here for what a search sends (an
#: optional system message and a user message): the system header with the knowledge-cutoff and
#: date lines, the system message trimmed, every other message untrimmed, no BOS (the engines add
#: exactly one, sal_core.backends.tokens). Its "Today Date" is the run's date in search-and-learn
#: (`strftime_now`), so its prompts change from day to day; here it is pinned to the template's own
#: fallback date, so a run is reproducible.
SAL_LLAMA3 = "sal-llama3"
SAL_LLAMA3_DATE = "26 Jul 2024"
SAL_LLAMA3_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system_message = messages[0]['content'] | trim -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system_message = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge Date: December 2023\\n' -}}"
    "{{- 'Today Date: " + SAL_LLAMA3_DATE + "\\n\\n' + system_message + '<|eot_id|>' -}}"
    "{%- for m in turns -%}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)
#: chat templates a config may name instead of writing them out
NAMED_TEMPLATES = {SAL_LLAMA3: SAL_LLAMA3_TEMPLATE}


def build_prompt(tokenizer: Any, problem: str, system_prompt: str, chat_template: str | None) -> str:
    """Prompt text ending where the assistant's answer starts.

    chat_template None uses the tokenizer's own template, "none" gives plain text (system prompt,
    blank line, problem, blank line), a name of NAMED_TEMPLATES that template, anything else is a
    Jinja chat template string. An empty system prompt is left out rather than sent as an empty
    message (search-and-learn's Llama template renders the same system header either way).
    """
    chat_template = NAMED_TEMPLATES.get(chat_template, chat_template) if chat_template else chat_template
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
