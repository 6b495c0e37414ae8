"""PRM-guided beam search (as in search-and-learn), batched over all problems of a shard.

Per problem, n beams advance one reasoning step per iteration. The PRM scores every extended beam;
beams whose step finished the solution are collected, and of the rest the best n / beam_width are
kept and each copied beam_width times into the n slots of the next iteration. The last iteration
drops the step stop string so every remaining beam writes its solution to the end. Each iteration is
ONE generate call (plus one per lookahead step) and ONE PRM call for all live beams of all problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tqdm import tqdm

from sal_core.backends.base import GenerationRequest
from sal_core.prm.step_aggregation import aggregate_steps
from sal_core.search.results import Completion, SearchResult, guided_result
from sal_core.search.steps import Shard, ends_solution, generate_step, score_texts, step_requests, warn_pruned
from sal_core.search.temperatures import cycle_temperatures, derive_seed, split_counts


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


def fill_slots(kept: Sequence[Beam], n: int, temperatures: Sequence[float]) -> list[Beam]:
    """Copy the kept beams (best first) into n slots, each copy next to its siblings, so a beam
    copied beam_width times meets beam_width consecutive temperatures of the cycle. When fewer than
    n / beam_width survived, the best beams get the extra copies."""
    if not 0 < len(kept) <= n:
        raise ValueError(f"cannot spread {len(kept)} beams over {n} slots")
    copies = split_counts(n, [1.0] * len(kept))
    slots: list[Beam] = []
    for beam, count in zip(kept, copies, strict=True):
        for _ in range(count):
            j = len(slots)
            slots.append(replace(beam, slot=j, temperature=temperatures[j], scores=list(beam.scores)))
    return slots


def select_beams(candidates: Sequence[Beam], keep: int, how: str, filter_duplicates: bool) -> list[Beam]:
    """The `keep` best unfinished beams by aggregated PRM score, best first (ties: earlier slot).
    With `filter_duplicates`, beams with the same text as an earlier one are dropped first."""
    pool = list(candidates)
    if filter_duplicates:
        seen: set[str] = set()
        pool = [b for b in pool if not (b.text in seen or seen.add(b.text))]
    ranked = sorted(pool, key=lambda b: -aggregate_steps(b.scores, how))
    return ranked[:keep]


def final_beams(
    completed: Sequence[Beam], unfinished: Sequence[Beam], n: int, how: str, sort_completed: bool
) -> list[Beam]:
    """The n completions returned for a problem: the first n finished beams (or the n best with
    `sort_completed`). If fewer than n finished, the best unfinished beams (best first) fill in, and
    if still short the chosen ones are repeated, as search-and-learn does."""
    chosen = sorted(completed, key=lambda b: -aggregate_steps(b.scores, how)) if sort_completed else list(completed)
    chosen = (chosen[:n] + list(unfinished))[:n]
    if chosen and len(chosen) < n:
        chosen = [chosen[i % len(chosen)] for i in range(n)]
    return chosen


def beam_search(shard: Shard) -> list[SearchResult]:
    """Run beam search for all problems of the shard at once; one SearchResult (n completions) per problem."""
    settings, prompts = shard.settings, shard.prompts
    n, keep = settings.n, settings.n // settings.beam_width
    temperatures = cycle_temperatures(n, settings.temperatures)
    active: list[list[Beam]] = [[Beam(problem=p) for _ in range(n)] for p in range(len(prompts))]
    completed: list[list[Beam]] = [[] for _ in prompts]

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
        _advance(shard, stepping, requests, last)
        for p in range(len(prompts)):
            mine = [b for b in stepping if b.problem == p]
            completed[p].extend(b for b in mine if b.finish_reason is not None)
            going = [b for b in mine if b.finish_reason is None]
            active[p] = select_beams(going, keep, settings.aggregation, settings.filter_duplicates)

    # the last iteration runs every remaining beam to the end, so n beams have normally finished;
    # otherwise the best unfinished beams fill the gap
    return [
        guided_result(
            [
                Completion(b.text, b.tokens, b.temperature, slot, b.finish_reason or "length", b.scores)
                for slot, b in enumerate(
                    final_beams(completed[p], active[p], n, settings.aggregation, settings.sort_completed)
                )
            ]
        )
        for p in range(len(prompts))
    ]


def _advance(shard: Shard, stepping: list[Beam], requests: list[GenerationRequest], last: bool) -> None:
    """Extend every stepping beam by its sampled step (one generate call), then score all of them
    (one PRM call); a beam whose step finished the solution gets its finish reason."""
    outputs, rollouts = generate_step(shard.backend, requests, shard.settings, last)
    for beam, out in zip(stepping, outputs, strict=True):
        beam.text += out.text
        beam.tokens += out.num_tokens
        if ends_solution(out):
            beam.finish_reason = out.finish_reason
    texts = [(b.problem, b.text + r) for b, r in zip(stepping, rollouts, strict=True)]
    scores = score_texts(shard.prm, shard.problems, texts)
    for beam, step_scores in zip(stepping, scores, strict=True):
        beam.scores = step_scores
