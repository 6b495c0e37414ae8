"""Qwen2.5-Math-PRM (Qwen/Qwen2.5-Math-PRM-7B, -72B): a 2-class head on every token, read at "<extra_0>".

The input is the PRM's chat template with system "Please reason step by step, and put your final
answer within \\boxed{}.", the problem as the user turn, and the steps joined by "<extra_0>" (and
ending with one) as the assistant turn. The step score is softmax(logits)[1] at each "<extra_0>". With
`step_layout: sal` the steps are search-and-learn's (`A.replace("\\n\\n", "<extra_0>") + "<extra_0>"`):
empty chunks kept, so a partial solution ending in a blank line ends in two tags, the last scored.

Supported checkpoints:
- the released models, whose config names the architecture `Qwen2ForProcessRewardModel`: loaded with
  `AutoModel.from_pretrained(..., trust_remote_code=True)`, i.e. running the modelling code shipped
  in the checkpoint (only for that architecture);
- any token-classification checkpoint with 2 labels (e.g. a Qwen2ForTokenClassification) whose
  tokenizer has "<extra_0>" as one token: loaded with AutoModelForTokenClassification, no remote code.
"""

from __future__ import annotations

from typing import Any

from sal_core.errors import ModelError
from sal_core.prm.hf import PLACEHOLDER, Encoded, TransformersPRM, load_pretrained, tokenize_with_tags
from sal_core.settings.jobs import PRMSettings

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TAG = "<extra_0>"
REMOTE_ARCHITECTURE = "Qwen2ForProcessRewardModel"


class QwenMathPRM(TransformersPRM):
    """Step scores from a per-token good/bad classifier at the "<extra_0>" step separators."""

    def __init__(self, settings: PRMSettings, tokenizer: Any, model: Any, device: Any) -> None:
        super().__init__(settings, tokenizer, model, device)
        if not tokenizer.chat_template:
            raise ModelError(f"prm {settings.name}: {settings.path} has no chat template")
        ids = tokenizer.encode(STEP_TAG, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelError(f"prm {settings.name}: the tokenizer of {settings.path} has no {STEP_TAG} token")
        self.tag_id = ids[0]

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        answer = "".join(step + PLACEHOLDER.format(k) for k, step in enumerate(steps))
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": problem},
            {"role": "assistant", "content": answer},
        ]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        ids, tags = tokenize_with_tags(self.tokenizer, text, STEP_TAG)
        if any(ids[t] != self.tag_id for t in tags):
            raise ModelError(f"prm {self.settings.name}: {STEP_TAG} is not one token in {self.settings.path}")
        return Encoded(ids, tags)

    def step_probs(self, input_ids: Any, attention_mask: Any, rows: Any, cols: Any) -> Any:
        # [0]: the logits, whether the model returns a tuple (remote code) or a ModelOutput
        logits = self.forward_module(input_ids=input_ids, attention_mask=attention_mask)[0]
        return logits[rows, cols].float().softmax(dim=-1)[:, 1]


def load_qwen_math(settings: PRMSettings, tokenizer: Any, device: Any, dtype: Any) -> QwenMathPRM:
    """The remote-code PRM for the released checkpoints, else a 2-label token classifier."""
    from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

    try:
        config = AutoConfig.from_pretrained(settings.path)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"prm {settings.name}: cannot read the config of {settings.path}: {err}") from err
    if REMOTE_ARCHITECTURE in (config.architectures or []):
        model = load_pretrained(settings, AutoModel, device, dtype, trust_remote_code=True)
    else:
        if config.num_labels != 2:
            raise ModelError(
                f"prm {settings.name}: {settings.path} has {config.num_labels} labels; a "
                f"qwen2.5-math PRM needs {REMOTE_ARCHITECTURE} or a 2-label token classifier"
            )
        model = load_pretrained(settings, AutoModelForTokenClassification, device, dtype)
    return QwenMathPRM(settings, tokenizer, model, device)
