"""How a step-wise search sends a partial solution to the model again (`search.continuation`).

`reencode` (search-and-learn's way, `src/sal/search/beam_search.py`: the chat is rebuilt with the
text so far and vLLM receives the rendered string): the prompt plus the text so far is tokenized
anew before every step. A tokenizer may then give the model ids it never wrote: SmolLM2 writes a
step's closing blank line as "\\n" "\\n" (198, 198) but encodes a trailing "\\n\\n" as one token (1116).

`exact`: every partial solution keeps the ids the model generated, step by step, and the next step
continues from exactly the prompt's ids plus those. A step ends at a token boundary (the engine
keeps the ids up to the token that completed the stop string, as vLLM does), and its text is
`decode(solution ids)[len(decode(ids before the step)):]`, so a step may end past its stop string
(SmolLM2's "\\n\\n\\n" is one token, 16506) and the text of a partial solution is always the decode
of its ids. Decoding a step's ids on their own would break multi-byte characters and SentencePiece
spaces; decoding the whole solution does not.

In `reencode` mode the search counts, per job, how many step boundaries re-encoding changed: the
re-encoded prompt + text (which it computes anyway, once per step, to send and to budget) no longer
ends with the ids the model generated in its last step.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sal_core.backends.base import GenerationBackend, GenerationOutput
from sal_core.constants import CONTINUATIONS
from sal_core.errors import ServerError

log = logging.getLogger(__name__)

REENCODE, EXACT = CONTINUATIONS

#: a step's generated ids; None when the engine (a server) returned none
StepIds = tuple[int, ...] | None


def solution_ids(steps: Sequence[StepIds]) -> tuple[int, ...]:
    """The generated ids of a partial solution, its steps' ids one after the other."""
    return tuple(itertools.chain.from_iterable(s for s in steps if s))


@dataclass
class Continuation:
    """One shard's continuation mode, its engine (which tokenizes, and decodes with its tokenizer),
    its prompts' ids (tokenized once) and the boundary counts."""

    backend: GenerationBackend
    exact: bool
    prompt_ids: list[tuple[int, ...]]
    #: reencode mode: partial solutions sent again whose last step's ids are known, and how many of
    #: those the re-encoding changed; `uncounted`: sent again with no ids to compare (a server gave none)
    boundaries: int = 0
    changed: int = 0
    uncounted: int = 0

    @classmethod
    def for_prompts(cls, backend: GenerationBackend, prompts: Sequence[str], mode: str) -> Continuation:
        ids = [tuple(row) for row in backend.encode_prompts(list(prompts))]
        return cls(backend, mode == EXACT, ids)

    def contexts(self, items: Sequence[tuple[int, str, Sequence[StepIds]]], count: bool) -> list[tuple[int, ...]]:
        """The ids each (problem, prompt + text so far, ids of the steps so far) is sent with: exact,
        the prompt's ids and the steps'; reencode, the text tokenized (one tokenizer call for all),
        with `count`, counting the step boundaries that re-encoding changed."""
        if self.exact:
            return [self.prompt_ids[p] + solution_ids(steps) for p, _, steps in items]
        texts = [text for _, text, steps in items if steps]
        encoded = iter(self.backend.encode_prompts(texts) if texts else [])
        out = []
        for problem, _, steps in items:
            if not steps:
                out.append(self.prompt_ids[problem])
                continue
            ids = tuple(next(encoded))
            if count:
                self._count(ids, steps[-1])
            out.append(ids)
        return out

    def _count(self, sent: tuple[int, ...], last: StepIds) -> None:
        if last is None:
            self.uncounted += 1
            return
        self.boundaries += 1
        self.changed += sent[len(sent) - len(last) :] != last

    def extended(self, before: Sequence[StepIds], out: GenerationOutput) -> GenerationOutput:
        """The step `out` as the search keeps it: exact, its text is the decode of the solution's ids
        past the decode of those before it (it may run past the stop string); reencode, as generated."""
        if not self.exact:
            return out
        if out.token_ids is None:
            raise ServerError(
                "search.continuation exact: the engine returned no token ids (a server must answer "
                "`return_token_ids` with each choice's `token_ids`, as vllm serve >= 0.10.2 and sal serve do)"
            )
        previous = solution_ids(before)
        text_before = self.decode(previous)
        text = self.decode(previous + out.token_ids)[len(text_before) :]
        return out if text == out.text else replace(out, text=text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, special tokens (end of sequence) left out, as the engines decode."""
        return self.backend.tokenizer.decode(list(ids), skip_special_tokens=True) if ids else ""

    def report(self, method: str) -> None:
        """One log line per job: in reencode mode, the step boundaries re-encoding changed."""
        if self.exact:
            log.info("%s: exact continuation (every step continued from the ids generated so far)", method)
            return
        note = f"; {self.uncounted} not counted (the engine returned no token ids)" if self.uncounted else ""
        log.info(
            "%s: re-encoding changed the ids at %d of %d step boundaries (search.continuation reencode)%s",
            method,
            self.changed,
            self.boundaries,
            note,
        )
