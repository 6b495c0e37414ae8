"""Math-Shepherd PRMs (peiyi9979/math-shepherd-mistral-7b-prm): a causal LM reading a step tag "ки".

Layout "default" (the model card): `problem + " " + steps`, each step followed by " ки", the steps
joined by a newline. Layout "sal" (search-and-learn `reward_models.py`, `MathShepherd.score`): the
search's system prompt, "\\n", the problem, "\\n", a space, then the completion with " ки" before
every "\\n\\n" and at the end unless it ends with "\\n\\n" (so empty chunks get tags, a trailing
"\\n\\n" none). Both are tokenized with the tokenizer's special tokens (Mistral: <s>). At each tag
the model predicts whether the step was good: the score is the softmax over the logits of "+" and
"-" at that token, P("+"). One forward pass scores all steps.
"""

from __future__ import annotations

from typing import Any

from sal_core.errors import ModelError
from sal_core.prm.base import STEP_SEPARATOR
from sal_core.prm.hf import PLACEHOLDER, CandidateTokenPRM, Encoded, single_token_id, tokenize_with_tags
from sal_core.settings.jobs import DEFAULT_SYSTEM_PROMPT, PRMSettings

STEP_TAG = "ки"
GOOD, BAD = "+", "-"


class MathShepherdPRM(CandidateTokenPRM):
    """Step scores read at the " ки" tag that ends each step."""

    def __init__(self, settings: PRMSettings, tokenizer: Any, model: Any, device: Any) -> None:
        super().__init__(settings, tokenizer, model, device, GOOD, BAD)
        self.tag_id = single_token_id(tokenizer, STEP_TAG)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        body = "\n".join(f"{step} {PLACEHOLDER.format(k)}" for k, step in enumerate(steps))
        return self._tagged(f"{problem} {body}")

    def encode_completion(self, problem: str, completion: str) -> tuple[Encoded, int] | None:
        if self.settings.step_layout != "sal":
            return super().encode_completion(problem, completion)
        steps = self.steps(completion)
        tagged = [f"{step} {PLACEHOLDER.format(k)}{STEP_SEPARATOR}" for k, step in enumerate(steps)]
        if not completion.endswith(STEP_SEPARATOR):
            tagged[-1] = tagged[-1][: -len(STEP_SEPARATOR)]
        return self._tagged(f"{DEFAULT_SYSTEM_PROMPT}\n{problem}\n {''.join(tagged)}"), len(steps)

    def _tagged(self, text: str) -> Encoded:
        # the model card's tokenizer.encode adds the tokenizer's own special tokens (Mistral: <s>)
        ids, tags = tokenize_with_tags(self.tokenizer, text, STEP_TAG, add_special_tokens=True)
        if any(ids[t] != self.tag_id for t in tags):
            raise ModelError(
                f"prm {self.settings.name}: the tokenizer of {self.settings.path} does not keep "
                f"the step tag {STEP_TAG!r} as the single token {self.tag_id}"
            )
        return Encoded(ids, tags)
