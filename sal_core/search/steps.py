"""One search step, shared by the search methods: requests for every partial solution that still
fits the context window, step termination, greedy lookahead rollouts and PRM scoring of many
problems in one call, with the tokens each part generated or made the PRM read.

Everything here works on whole search steps (all beams of all problems of a shard), because the
point of this package is that one step costs one generate call and one PRM call, not one per problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.prm.base import PRM, STEP_SEPARATOR
from sal_core.search.continuation import Continuation, StepIds
from sal_core.settings.jobs import SearchSettings

log = logging.getLogger(__name__)

#: a request must leave at least this many tokens to generate, or its beam is pruned
MIN_NEW_TOKENS = 4
#: a text containing this has written its final answer: search-and-learn's DVTS ends such subtrees
#: (`"boxed{" in beam.current_text`, diverse_verifier_tree_search.py); its beam search does not
ANSWER_MARKER = "boxed{"
STEP_STOP = (STEP_SEPARATOR,)


def token_budget(max_model_len: int, prompt_length: int, wanted: int) -> int | None:
    """Tokens a request of `prompt_length` prompt tokens may generate: `wanted`, clipped to what is
    left of the context window; None when fewer than MIN_NEW_TOKENS are left (the caller prunes the beam)."""
    room = max_model_len - prompt_length
    if room < MIN_NEW_TOKENS:
        return None
    return min(wanted, room)


def ends_solution(output: GenerationOutput) -> bool:
    """Whether a generated step finishes its solution: end-of-sequence, the token limit, or an empty
    step (the model has nothing more to say); search-and-learn's rule (beam_search.py, the
    `stop_reasons[0] == "EOS" or == "length" or next_texts[0] == ""` test)."""
    return output.finish_reason in ("eos", "length") or output.text == ""


def states_answer(text: str) -> bool:
    """Whether a (partial) solution has written its boxed answer: the `stop_at_boxed` rule."""
    return ANSWER_MARKER in text


def finishes(output: GenerationOutput, text: str, settings: SearchSettings) -> bool:
    """Whether the step `output`, which made the partial solution `text`, ends it: `ends_solution`,
    or with the boxed rule (`settings.stops_at_boxed`) a text that states a boxed answer."""
    return ends_solution(output) or (settings.stops_at_boxed and states_answer(text))


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
    shard: Shard,
    requests: Sequence[GenerationRequest],
    partials: Sequence[Partial],
    outputs: Sequence[GenerationOutput],
    going: list[int],
) -> tuple[list[str], list[int]]:
    """Greedy (temperature 0) continuations of `lookahead` further steps after the sampled steps of
    the requests in `going` (those whose step did not finish its solution; request k extends
    `partials[k]`), used only to score the step by where it leads, and the tokens each rollout
    generated. One generate call per lookahead step, covering all requests still going; each is sent
    as the search's continuation mode sends a partial solution."""
    cont, settings = shard.continuation, shard.settings
    rollouts = [""] * len(requests)
    tokens = [0] * len(requests)
    taken = [[*partials[i].step_ids, outputs[i].token_ids] for i in range(len(requests))]
    for _ in range(settings.lookahead):
        texts = [requests[i].prompt + outputs[i].text + rollouts[i] for i in going]
        contexts = cont.contexts([(partials[i].problem, t, taken[i]) for i, t in zip(going, texts, strict=True)], False)
        batch: list[tuple[int, GenerationRequest]] = []
        for i, text, ids in zip(going, texts, contexts, strict=True):
            budget = token_budget(shard.backend.max_model_len, len(ids), settings.max_tokens)
            if budget is not None:
                batch.append((i, GenerationRequest(text, 0.0, 1.0, budget, STEP_STOP, requests[i].seed, ids)))
        if not batch:
            break
        results = shard.backend.generate([req for _, req in batch])
        going = []
        for (i, _), out in zip(batch, results, strict=True):
            out = cont.extended(taken[i], out)
            taken[i].append(out.token_ids)
            rollouts[i] += out.text
            tokens[i] += out.num_tokens
            if not ends_solution(out):
                going.append(i)
    return rollouts, tokens


def score_texts(
    prm: PRM, problems: Sequence[str], items: Sequence[tuple[int, str]]
) -> tuple[list[list[float]], list[int]]:
    """Step scores for (problem index, solution text) pairs, in item order, and the tokens the PRM
    read for each, with ONE PRM call for all problems (items grouped by problem, as the PRM
    interface takes them)."""
    if not items:
        return [], []
    positions: dict[int, list[int]] = {}
    for k, (problem, _) in enumerate(items):
        positions.setdefault(problem, []).append(k)
    order = list(positions)
    scores, read = prm.score_with_tokens(
        [problems[p] for p in order],
        [[items[k][1] for k in positions[p]] for p in order],
    )
    if len(scores) != len(order) or len(read) != len(order):
        raise ValueError(f"PRM returned scores for {len(scores)} problems, expected {len(order)}")
    flat: list[list[float]] = [[] for _ in items]
    tokens = [0] * len(items)
    for p, per_problem, per_problem_read in zip(order, scores, read, strict=True):
        for k, step_scores, count in zip(positions[p], per_problem, per_problem_read, strict=True):
            flat[k] = [float(s) for s in step_scores]
            tokens[k] = int(count)
    return flat, tokens


@dataclass
class Step:
    """What one search step generated, per request: the sampled step, the greedy lookahead rollout
    that follows it (only to score it) and the tokens that rollout cost."""

    outputs: list[GenerationOutput]
    rollouts: list[str]
    rollout_tokens: list[int]


def generate_step(shard: Shard, requests: list[GenerationRequest], partials: Sequence[Partial], last: bool) -> Step:
    """One search step for every live beam at once (request k extends `partials[k]`): the sampled
    steps (exact continuation: each step's text decoded from the solution's ids), and the greedy
    lookahead rollouts used only to score them (empty strings without lookahead, on the last step,
    and after a step that `finishes` its solution, so a finished solution is scored as it is)."""
    settings = shard.settings
    outputs = shard.backend.generate(requests) if requests else []
    outputs = [shard.continuation.extended(q.step_ids, out) for q, out in zip(partials, outputs, strict=True)]
    rollouts, tokens = [""] * len(outputs), [0] * len(outputs)
    if settings.lookahead and not last:
        going = [k for k, out in enumerate(outputs) if not finishes(out, partials[k].text + out.text, settings)]
        rollouts, tokens = lookahead_rollouts(shard, requests, partials, outputs, going)
    return Step(outputs, rollouts, tokens)


@dataclass
class Shard:
    """What a search method runs on: one shard's problems and their prompts, the search settings,
    the engine, the guiding PRM (None for Best-of-N), and the dataset row of the first problem (request
    seeds follow dataset rows, so a problem gets the same samples whatever shard it falls in)."""

    problems: Sequence[str]
    prompts: Sequence[str]
    settings: SearchSettings
    backend: GenerationBackend
    prm: PRM | None = None
    first_index: int = 0
    #: how partial solutions are sent again (`search.continuation`), the prompts' ids, boundary counts
    continuation: Continuation = field(init=False)

    def __post_init__(self) -> None:
        self.continuation = Continuation.for_prompts(self.backend, self.prompts, self.settings.continuation)


class Partial(Protocol):
    """A partial solution a search extends by one step (a beam, a DVTS subtree, a particle): its
    problem, its text and the ids of each step it took (None for a step a server gave no ids for)."""

    problem: int
    text: str

    @property
    def step_ids(self) -> Sequence[StepIds]: ...


def step_requests(
    shard: Shard,
    partials: Sequence[Partial],
    last: bool,
    samples: Callable[[Any], list[tuple[float, int]]],
    prune: Callable[[Any], None],
) -> tuple[list[Any], list[GenerationRequest], list[int]]:
    """Requests for one step of every partial solution, in order: one per (temperature, seed) that
    `samples(partial)` gives. A partial whose prompt no longer leaves room to generate is handed to
    `prune` instead. Each request carries its prompt's ids, tokenized here once (re-encoding) or
    carried over (exact continuation), so neither the budget nor the engine tokenizes it again.
    Returns the partials that step, their requests, and the pruned ones' problems."""
    stepping, requests, pruned = [], [], []
    stop = () if last else STEP_STOP
    prompts = [shard.prompts[q.problem] + q.text for q in partials]
    items = [(q.problem, prompt, q.step_ids) for q, prompt in zip(partials, prompts, strict=True)]
    contexts = shard.continuation.contexts(items, True)
    for partial, prompt, ids in zip(partials, prompts, contexts, strict=True):
        budget = token_budget(shard.backend.max_model_len, len(ids), shard.settings.max_tokens)
        if budget is None:
            prune(partial)
            pruned.append(partial.problem)
            continue
        for temperature, seed in samples(partial):
            requests.append(GenerationRequest(prompt, temperature, shard.settings.top_p, budget, stop, seed, ids))
        stepping.append(partial)
    return stepping, requests, pruned
