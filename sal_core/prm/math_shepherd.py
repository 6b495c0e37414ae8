"""Math-Shepherd PRMs (peiyi9979/math-shepherd-mistral-7b-prm): a causal LM reading a step tag "ки".

The input is `problem + " " + steps`, each step followed by " ки" and the steps joined by a newline,
as in the model card. At each tag token the model predicts whether the step was good: the score is
the softmax over the logits of "+" and "-" at that token, P("+"). One forward pass scores all steps.
"""

from __future__ import annotations

from typing import Any

from sal_core.errors import ModelError
from sal_core.prm.hf import PLACEHOLDER, CandidateTokenPRM, Encoded, single_token_id, tokenize_with_tags
from sal_core.settings.jobs import PRMSettings

STEP_TAG = "ки"
GOOD, BAD = "+", "-"


class MathShepherdPRM(CandidateTokenPRM):
    """Step scores read at the " ки" tag that ends each step."""

    def __init__(self, settings: PRMSettings, tokenizer: Any, model: Any, device: Any) -> None:
        super().__init__(settings, tokenizer, model, device, GOOD, BAD)
        self.tag_id = single_token_id(tokenizer, STEP_TAG)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        body = "\n".join(f"{step} {PLACEHOLDER.format(k)}" for k, step in enumerate(steps))
        # the model card's tokenizer.encode adds the tokenizer's own special tokens (Mistral: <s>)
        ids, tags = tokenize_with_tags(self.tokenizer, f"{problem} {body}", STEP_TAG, add_special_tokens=True)
        if any(ids[t] != self.tag_id for t in tags):
            raise ModelError(
                f"prm {self.settings.name}: the tokenizer of {self.settings.path} does not keep "
                f"the step tag {STEP_TAG!r} as the single token {self.tag_id}"
            )
        return Encoded(ids, tags)
