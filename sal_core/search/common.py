"""Bookkeeping shared by the search methods: the result record, context-window checks, step
termination, greedy lookahead rollouts and PRM scoring of many problems in one call.

Everything here works on whole search steps (all beams of all problems of a shard), because the
point of this package is that one step costs one generate call and one PRM call, not one per problem.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.config import SearchSettings
from sal_core.prm.base import PRM, STEP_SEPARATOR

log = logging.getLogger(__name__)

#: a request must leave at least this many tokens to generate, or its beam is pruned
MIN_NEW_TOKENS = 4
#: a step containing this has written its final answer; search-and-learn stops such beams
ANSWER_MARKER = "\\boxed{"
STEP_STOP = (STEP_SEPARATOR,)


@dataclass
class SearchResult:
    """All completions of one problem, parallel lists (one entry per completion).

    `groups` is the DVTS subtree of each completion (Best-of-N and beam search: its own index);
    `search_scores` the in-search PRM's step scores (None for Best-of-N, which uses no PRM).
    """

    completions: list[str]
    completion_tokens: list[int]
    temperatures: list[float]
    groups: list[int]
    finish_reasons: list[str]
    search_scores: list[list[float]] | None = None

    def __post_init__(self) -> None:
        lengths = {len(self.completion_tokens), len(self.temperatures), len(self.groups), len(self.finish_reasons)}
        if self.search_scores is not None:
            lengths.add(len(self.search_scores))
        if lengths != {len(self.completions)}:
            raise ValueError(f"SearchResult lists differ in length: {lengths | {len(self.completions)}}")


def new_token_budget(backend: GenerationBackend, prompt: str, wanted: int) -> int | None:
    """Tokens a request on `prompt` may generate: `wanted`, clipped to what is left of the context
    window; None when fewer than MIN_NEW_TOKENS are left (the caller prunes the beam)."""
    room = backend.max_model_len - backend.prompt_length(prompt)
    if room < MIN_NEW_TOKENS:
        return None
    return min(wanted, room)


def ends_solution(output: GenerationOutput) -> bool:
    """Whether a generated step finishes its solution: end-of-sequence, the token limit, an empty
    step (the model has nothing more to say), or a step that states the boxed answer."""
    return output.finish_reason in ("eos", "length") or output.text == "" or ANSWER_MARKER in output.text


def warn_pruned(method: str, iteration: int, pruned: Sequence[int], max_model_len: int) -> None:
    """One warning per step naming the problems whose beams no longer fit the context window."""
    if pruned:
        problems = sorted(set(pruned))
        log.warning(
            "%s step %d: pruned %d beam(s) of problem(s) %s: prompt + partial solution no longer fits "
            "max_model_len=%d (finish_reason 'length')",
            method,
            iteration,
            len(pruned),
            problems,
            max_model_len,
        )


def lookahead_rollouts(
    backend: GenerationBackend,
    requests: Sequence[GenerationRequest],
    outputs: Sequence[GenerationOutput],
    steps: int,
    max_tokens: int,
) -> list[str]:
    """Greedy (temperature 0) continuations of `steps` further steps after each sampled step, used
    only to score the step by where it leads. Finished steps get no rollout. One generate call per
    lookahead step, covering all requests that are still going."""
    rollouts = [""] * len(requests)
    going = [i for i, out in enumerate(outputs) if not ends_solution(out)]
    for _ in range(steps):
        batch: list[tuple[int, GenerationRequest]] = []
        for i in going:
            prompt = requests[i].prompt + outputs[i].text + rollouts[i]
            budget = new_token_budget(backend, prompt, max_tokens)
            if budget is not None:
                batch.append((i, GenerationRequest(prompt, 0.0, 1.0, budget, STEP_STOP, requests[i].seed)))
        if not batch:
            break
        results = backend.generate([req for _, req in batch])
        going = []
        for (i, _), out in zip(batch, results, strict=True):
            rollouts[i] += out.text
            if not ends_solution(out):
                going.append(i)
    return rollouts


def score_texts(prm: PRM, problems: Sequence[str], items: Sequence[tuple[int, str]]) -> list[list[float]]:
    """Step scores for (problem index, solution text) pairs, in item order, with ONE prm.score call
    for all problems (items grouped by problem, as the PRM interface takes them)."""
    if not items:
        return []
    positions: dict[int, list[int]] = {}
    for k, (problem, _) in enumerate(items):
        positions.setdefault(problem, []).append(k)
    order = list(positions)
    scores = prm.score(
        [problems[p] for p in order],
        [[items[k][1] for k in positions[p]] for p in order],
    )
    if len(scores) != len(order):
        raise ValueError(f"PRM returned scores for {len(scores)} problems, expected {len(order)}")
    flat: list[list[float] | None] = [None] * len(items)
    for p, per_problem in zip(order, scores, strict=True):
        for k, step_scores in zip(positions[p], per_problem, strict=True):
            flat[k] = [float(s) for s in step_scores]
    return flat  # type: ignore[return-value]


def generate_step(
    backend: GenerationBackend, requests: list[GenerationRequest], settings: SearchSettings, last: bool
) -> tuple[list[GenerationOutput], list[str]]:
    """One search step for every live beam at once: the sampled steps, and the greedy lookahead
    rollouts used only to score them (empty strings without lookahead, and on the last step)."""
    outputs = backend.generate(requests) if requests else []
    rollouts = [""] * len(outputs)
    if settings.lookahead and not last:
        rollouts = lookahead_rollouts(backend, requests, outputs, settings.lookahead, settings.max_tokens)
    return outputs, rollouts
