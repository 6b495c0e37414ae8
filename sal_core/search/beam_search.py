"""PRM-guided beam search, batched over all problems of a shard (search-and-learn
`src/sal/search/beam_search.py`, with hotncold's multi-temperature slots).

Per problem, n beams advance one reasoning step per iteration. The PRM scores every extended beam;
beams whose step finished the solution (end of sequence, token limit, empty step; optionally a
`boxed{` answer, `stop_at_boxed`) are collected, and of the rest the best n / beam_width are kept.
As in search-and-learn the kept beams stay in slot order and are repeated cyclically over the n
slots of the next iteration, `(kept * repeats)[:n]`, so when fewer survive the earliest-listed get
the extra copies; slot j samples at `slot_temperatures(...)[j]`, so each kept beam meets every
temperature of the beam_width-long list once. The last iteration drops the step stop string so
every remaining beam writes its solution to the end. Each iteration is ONE generate call (plus one
per lookahead step) and ONE PRM call for all live beams of all problems; every generated and every
PRM-read token is charged to its problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tqdm import tqdm

from sal_core.backends.base import GenerationRequest
from sal_core.prm.step_aggregation import aggregate_steps
from sal_core.search.continuation import StepIds
from sal_core.search.results import Completion, SearchResult, guided_result
from sal_core.search.steps import Shard, finishes, generate_step, score_texts, step_requests, warn_pruned
from sal_core.search.temperatures import derive_seed, slot_temperatures, temperature_list


@dataclass
class Beam:
    """One partial solution of problem `problem`; `slot` is its position among the problem's n beams
    in the current iteration (it sets the temperature and the seed)."""

    problem: int
    slot: int = 0
    temperature: float = 0.0
    text: str = ""
    tokens: int = 0
    scores: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    #: the generated ids of each step (search.continuation; None where a server returned none)
    step_ids: tuple[StepIds, ...] = ()


def fill_slots(kept: Sequence[Beam], n: int, temperatures: Sequence[float]) -> list[Beam]:
    """The n beams of the next iteration: the kept beams (in slot order) repeated cyclically, slot j
    a copy of kept[j % len(kept)] at temperatures[j], as search-and-learn's `(active * repeats)[:n]`."""
    if not 0 < len(kept) <= n:
        raise ValueError(f"cannot spread {len(kept)} beams over {n} slots")
    return [
        replace(kept[j % len(kept)], slot=j, temperature=temperatures[j], scores=list(kept[j % len(kept)].scores))
        for j in range(n)
    ]


def select_beams(candidates: Sequence[Beam], keep: int, how: str, filter_duplicates: bool) -> list[Beam]:
    """The `keep` best unfinished beams by aggregated PRM score (ties: the earlier slot), returned in
    slot order as search-and-learn keeps them. With `filter_duplicates`, a beam whose text repeats
    an earlier beam's is dropped first (texts are compared, in both continuation modes: two beams
    with one text but different ids, possible only under exact continuation, count as duplicates)."""
    pool = list(candidates)
    if filter_duplicates:
        seen: set[str] = set()
        pool = [b for b in pool if not (b.text in seen or seen.add(b.text))]
    ranked = sorted(range(len(pool)), key=lambda i: -aggregate_steps(pool[i].scores, how))
    return [pool[i] for i in sorted(ranked[:keep])]


def final_beams(completed: Sequence[Beam], n: int, how: str, sort_completed: bool) -> list[Beam]:
    """The n completions returned for a problem: the first n finished beams (or the n best with
    `sort_completed`), repeated cyclically when fewer than n finished (search-and-learn)."""
    chosen = sorted(completed, key=lambda b: -aggregate_steps(b.scores, how)) if sort_completed else list(completed)
    chosen = chosen[:n]
    if chosen and len(chosen) < n:
        chosen = [chosen[i % len(chosen)] for i in range(n)]
    return chosen


def beam_search(shard: Shard) -> list[SearchResult]:
    """Run beam search for all problems of the shard at once; one SearchResult (n completions) per problem."""
    settings, prompts = shard.settings, shard.prompts
    n, keep = settings.n, settings.n // settings.beam_width
    listed = temperature_list(settings.beam_width, settings.temperatures, settings.temperature_ratios)
    temperatures = slot_temperatures(n, settings.beam_width, listed)
    active: list[list[Beam]] = [[Beam(problem=p) for _ in range(n)] for p in range(len(prompts))]
    completed: list[list[Beam]] = [[] for _ in prompts]
    spent = [[0, 0] for _ in prompts]  # per problem: generated tokens, PRM-read tokens

    def prune(beam: Beam) -> None:
        beam.finish_reason = "length"
        completed[beam.problem].append(beam)

    for it in tqdm(range(settings.num_iterations), desc="beam search", unit="step"):
        last = it == settings.num_iterations - 1
        live = [beam for p in range(len(prompts)) if active[p] for beam in fill_slots(active[p], n, temperatures)]
        if not live:
            break

        def samples(beam: Beam, it: int = it) -> list[tuple[float, int]]:
            return [(beam.temperature, derive_seed(settings.seed, shard.first_index + beam.problem, beam.slot, it))]

        stepping, requests, pruned = step_requests(shard, live, last, samples, prune)
        warn_pruned("beam_search", it, pruned, shard.backend.max_model_len)
        _advance(shard, stepping, requests, last, spent)
        for p in range(len(prompts)):
            mine = [b for b in stepping if b.problem == p]
            completed[p].extend(b for b in mine if b.finish_reason is not None)
            going = [b for b in mine if b.finish_reason is None]
            active[p] = select_beams(going, keep, settings.aggregation, settings.filter_duplicates)

    # the last iteration runs every remaining beam to the end, so every live beam has finished
    results = []
    for p in range(len(prompts)):
        beams = final_beams(completed[p], n, settings.aggregation, settings.sort_completed)
        result = guided_result(
            [
                Completion(b.text, b.tokens, b.temperature, slot, b.finish_reason or "length", b.scores)
                for slot, b in enumerate(beams)
            ]
        )
        result.generated_tokens, result.prm_tokens = spent[p]
        results.append(result)
    return results


def _advance(
    shard: Shard, stepping: list[Beam], requests: list[GenerationRequest], last: bool, spent: list[list[int]]
) -> None:
    """Extend every stepping beam by its sampled step (one generate call), then score all of them
    (one PRM call); a beam whose step finished the solution gets its finish reason. Every token
    generated (lookahead rollouts included) and read by the PRM is added to its problem's `spent`."""
    step = generate_step(shard, requests, stepping, last)
    for beam, out, extra in zip(stepping, step.outputs, step.rollout_tokens, strict=True):
        beam.text += out.text
        beam.step_ids += (out.token_ids,)
        beam.tokens += out.num_tokens
        spent[beam.problem][0] += out.num_tokens + extra
        if finishes(out, beam.text, shard.settings):
            beam.finish_reason = out.finish_reason
    texts = [(b.problem, b.text + r) for b, r in zip(stepping, step.rollouts, strict=True)]
    scores, read = score_texts(shard.prm, shard.problems, texts)
    for beam, step_scores, tokens in zip(stepping, scores, read, strict=True):
        beam.scores = step_scores
        spent[beam.problem][1] += tokens
