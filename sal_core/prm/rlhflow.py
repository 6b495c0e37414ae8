"""RLHFlow PRMs (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data, -Mistral-Data): a chat judge answering "+" or "-".

The solution is a conversation in the PRM's own chat template: each step is a user turn (the first
one is the problem, a space, and step 1), each answered by an assistant turn "+". The step score is
P("+") / (P("+") + P("-")) from the logits at the token just before that assistant "+", i.e. what the
judge would answer after reading the solution up to this step. The whole conversation is rendered
once and all its steps are read from one forward pass, as search-and-learn's default batched path
does (`reward_models.py`, `_score_batched`; its one-pass-per-step `_score_single` is the RLHFlow
reference). With `step_layout: sal` the steps are search-and-learn's `ans.split("\\n\\n")`, empty
ones kept, so a partial solution ending in a blank line gets a last, empty user turn.

The embedded default runs SmolLM2-135M-Instruct in this format: a real but *untrained* judge (it was
never fine-tuned to grade steps), so its scores exercise the pipeline, not a good ranking.
"""

from __future__ import annotations

from typing import Any

from sal_core.errors import ModelError
from sal_core.prm.hf import PLACEHOLDER, CandidateTokenPRM, Encoded, tokenize_with_tags
from sal_core.settings.jobs import PRMSettings

GOOD, BAD = "+", "-"


class RLHFlowPRM(CandidateTokenPRM):
    """Step scores from a causal LM that answers each step of a chat with "+" (good) or "-" (bad)."""

    def __init__(self, settings: PRMSettings, tokenizer: Any, model: Any, device: Any) -> None:
        if not tokenizer.chat_template:
            raise ModelError(f"prm {settings.name}: {settings.path} has no chat template (an rlhflow PRM needs one)")
        super().__init__(settings, tokenizer, model, device, GOOD, BAD)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        conversation = []
        for k, step in enumerate(steps):
            conversation.append({"role": "user", "content": f"{problem} {step}" if k == 0 else step})
            conversation.append({"role": "assistant", "content": PLACEHOLDER.format(k)})
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False)
        ids, tags = tokenize_with_tags(self.tokenizer, text, GOOD)
        if any(ids[t] != self.candidates[0] for t in tags):
            raise ModelError(
                f"prm {self.settings.name}: the chat template of {self.settings.path} does not "
                f"tokenize the assistant answer {GOOD!r} as the token {self.candidates[0]}"
            )
        # the logits one token before "+" are the judge's prediction of its answer
        return Encoded(ids, [t - 1 for t in tags])
