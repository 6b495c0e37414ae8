"""The generation interface every engine implements: one call takes all requests of a search step.

Keeping it this small lets vLLM batch continuously on a GPU and lets the transformers engine run
the same search code on a CPU, so tests exercise the real search logic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sal_core.backends.tokens import batch_prompt_token_ids

FinishReason = Literal["stop", "length", "eos"]


@dataclass(frozen=True)
class GenerationRequest:
    """One sampling request. `prompt` is the full text fed to the model (chat template applied,
    plus any partial solution); every engine turns it into ids with `tokens.prompt_token_ids`, unless
    `prompt_token_ids` are given (a server receives token prompts from its clients): those are then the
    prompt's tokens as the engine must see them, and `prompt` is only for reading. `stop` strings end
    generation and are kept in the output text."""

    prompt: str
    temperature: float
    top_p: float = 1.0
    max_tokens: int = 2048
    stop: tuple[str, ...] = ()
    seed: int | None = None
    prompt_token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class GenerationOutput:
    """What came back for one request: the new text only (not the prompt), how many tokens were
    generated, and why generation ended (a stop string, the token limit, or the end-of-sequence token).

    `token_ids` are the generated ids as the engine returns them: an end-of-sequence token included,
    and at a stop string the ids up to the token that completed it (the text is cut at the stop
    string, so that token may hold more than the text shows). None where a server returned none;
    exact continuation (sal_core.search.continuation) needs them."""

    text: str
    num_tokens: int
    finish_reason: FinishReason
    token_ids: tuple[int, ...] | None = None


#: the answer to a request whose prompt leaves no room in the context window (it never runs)
NO_ROOM = GenerationOutput(text="", num_tokens=0, finish_reason="length", token_ids=())


@dataclass(frozen=True)
class LoadedWeights:
    """A causal LM an engine holds in memory, for a PRM of the same checkpoint to reuse instead of
    loading it again (the embedded default judges steps with its own policy model)."""

    path: str
    device: Any
    dtype: Any
    model: Any
    tokenizer: Any


class GenerationBackend(ABC):
    """An engine that turns prompts into sampled continuations."""

    #: the longest prompt + continuation, in tokens, the engine accepts
    max_model_len: int
    #: the Hugging Face tokenizer of the model (for chat templates and token counts)
    tokenizer: Any
    #: the weights in this process, when the engine holds them where a PRM could use them
    weights: LoadedWeights | None = None

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """Sample one continuation per request, in request order."""

    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text` on its own (no special tokens added), e.g. of a generated step."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_length(self, prompt: str) -> int:
        """Number of tokens the engine receives for `prompt` (its `prompt_token_ids`, a BOS included
        where the model takes one): what the context-window budget must count."""
        return len(self.encode_prompts([prompt])[0])

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """The ids the engine receives for each text prompt (`tokens.batch_prompt_token_ids`, one
        tokenizer call): a search step tokenizes its prompts here once and sends the ids."""
        return batch_prompt_token_ids(self.tokenizer, prompts)
