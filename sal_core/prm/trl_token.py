"""Token-classification PRMs trained with TRL's PRMTrainer (AutoModelForTokenClassification).

The input is built as PRMTrainer builds it: the BOS token (when the tokenizer has one), the problem,
then each step tokenized on its own and followed by the step separator (TRL's default "\\n"), with
nothing between the problem and the first step. The label of a step sits on its last token (the
separator's last token); the score is softmax(logits)[1] there, label 1 meaning a correct step.
"""

from __future__ import annotations

from typing import Any

from sal_core.errors import ModelError
from sal_core.prm.hf import Encoded, TransformersPRM, load_pretrained
from sal_core.settings.jobs import PRMSettings

STEP_SEPARATOR = "\n"


class TRLTokenPRM(TransformersPRM):
    """Step scores from a token classifier at the end of each step."""

    def __init__(
        self, settings: PRMSettings, tokenizer: Any, model: Any, device: Any, step_separator: str = STEP_SEPARATOR
    ) -> None:
        super().__init__(settings, tokenizer, model, device)
        self.separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)
        if not self.separator_ids:
            raise ModelError(f"prm {settings.name}: the step separator {step_separator!r} has no tokens")

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        ids = bos + self.tokenizer.encode(problem, add_special_tokens=False)
        positions = []
        for step in steps:
            ids += self.tokenizer.encode(step, add_special_tokens=False) + self.separator_ids
            positions.append(len(ids) - 1)
        return Encoded(ids, positions)

    def step_probs(self, input_ids: Any, attention_mask: Any, rows: Any, cols: Any) -> Any:
        logits = self.forward_module(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits[rows, cols].float().softmax(dim=-1)[:, 1]


def load_trl(settings: PRMSettings, tokenizer: Any, device: Any, dtype: Any) -> TRLTokenPRM:
    from transformers import AutoModelForTokenClassification

    model = load_pretrained(settings, AutoModelForTokenClassification, device, dtype)
    if model.config.num_labels != 2:
        raise ModelError(
            f"prm {settings.name}: {settings.path} has {model.config.num_labels} label(s); "
            "a TRL PRM classifies each step into 2 labels (0 = wrong, 1 = correct)"
        )
    return TRLTokenPRM(settings, tokenizer, model, device)
