"""Particle filtering and particle Gibbs, batched over all problems of a shard (its_hub 1.2.0
`its_hub/core/algorithms/particle_gibbs.py`, `ParticleGibbs.ainfer`, with hotncold's temperatures).

The budget n splits into `sweeps` sweeps of m = n / sweeps particles. In a sweep every unfinished
particle samples its next step (slot i at entry i of the m-long temperature list, whatever particle
was copied into it), the PRM scores every stepping particle's partial solution, and a particle's log
weight is the logit of its aggregated step score (`aggregation: last`: the latest step's). After
every step each problem still going draws m - r particles with replacement from all m (finished ones
keep their final weight) by softmax(log weights / weight_temperature), and the r reference particles
follow them. A sweep ends when all particles have finished: end of sequence, the token limit, an
empty step, `boxed{` with `stop_at_boxed`, or the step limit `num_iterations` (its_hub's max_steps +
1; finish reason `step_limit`). Particle Gibbs: after a sweep, `reference_particles` final particles
drawn by weight enter the next sweep unchanged; a copy of one drawn at step t is cut back to its first
t steps and goes on.

The result is the last sweep's m final particles (duplicates included, as its_hub returns them),
their normalised weights, the selected one (argmax of the log weights, or drawn by weight) and the
ESS after each step of each sweep. Every step is ONE generate call (plus one per lookahead step) and
ONE PRM call for all problems; every token generated or read by the PRM, in every sweep, is charged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

import sal_core.search.resampling as resampling
from sal_core.constants import STEP_LIMIT
from sal_core.prm.step_aggregation import aggregate_steps
from sal_core.search.continuation import StepIds
from sal_core.search.resampling import REFERENCE, RESAMPLE, SELECT, draw_seed, request_seed
from sal_core.search.results import SearchResult
from sal_core.search.steps import Shard, Step, finishes, generate_step, score_texts, step_requests, warn_pruned
from sal_core.search.temperatures import temperature_list


@dataclass(frozen=True)
class Taken:
    """One step a particle took: its text and tokens, the temperature that sampled it, the PRM's step
    scores of the partial solution it ended, and the log weight they gave."""

    text: str
    tokens: int
    temperature: float
    scores: tuple[float, ...]
    log_weight: float
    #: the step's generated ids (search.continuation; None where a server returned none)
    ids: StepIds = None


@dataclass
class Particle:
    """One particle of problem `problem` in slot `slot`; `finish_reason` is None while it goes on."""

    problem: int
    slot: int
    taken: list[Taken] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.taken)

    @property
    def step_ids(self) -> list[StepIds]:
        return [t.ids for t in self.taken]

    @property
    def log_weight(self) -> float:
        """The latest step's log weight (0 before any step, as its_hub's `Particle.log_weight`)."""
        return self.taken[-1].log_weight if self.taken else 0.0

    def copy_into(self, slot: int, steps: int | None = None) -> Particle:
        """A copy in `slot`; with `steps`, cut back to its first `steps` steps, going on if that cut
        anything (its_hub: a resampled reference particle is truncated to the current step)."""
        if steps is not None and len(self.taken) > steps:
            return Particle(self.problem, slot, self.taken[:steps], None)
        return Particle(self.problem, slot, list(self.taken), self.finish_reason)


@dataclass
class Sweep:
    """What one sweep works with: its index, the temperature of each of the m slots, and per problem
    the references carried in (empty in the first sweep)."""

    index: int
    temperatures: list[float]
    references: list[list[Particle]]


def particle_filtering(shard: Shard) -> list[SearchResult]:
    """Run particle filtering (particle Gibbs with sweeps > 1) for all problems of the shard at once."""
    settings = shard.settings
    m = settings.n // settings.sweeps
    if not 0 <= (settings.reference_particles if settings.sweeps > 1 else 0) < m:
        raise ValueError(f"{settings.reference_particles} reference particles leave none free among {m}")
    temperatures = temperature_list(m, settings.temperatures, settings.temperature_ratios)
    spent = [[0, 0] for _ in shard.prompts]  # per problem: generated tokens, PRM-read tokens
    ess: list[list[list[float]]] = [[] for _ in shard.prompts]
    references: list[list[Particle]] = [[] for _ in shard.prompts]
    for index in range(settings.sweeps):
        particles = run_sweep(shard, Sweep(index, temperatures, references), spent, ess)
        if index < settings.sweeps - 1:
            references = [pick_references(shard, index, p, ps, m) for p, ps in enumerate(particles)]
    return [particle_result(shard, p, ps, spent[p], ess[p]) for p, ps in enumerate(particles)]


def run_sweep(shard: Shard, sweep: Sweep, spent: list[list[int]], ess: list[list[list[float]]]) -> list[list[Particle]]:
    """One sweep for every problem; returns each problem's m final particles (free ones, then references)."""
    settings = shard.settings
    m = len(sweep.temperatures)
    particles = [[Particle(p, i) for i in range(m - len(refs))] + refs for p, refs in enumerate(sweep.references)]
    for per_problem in ess:
        per_problem.append([])
    limit = settings.num_iterations
    for step in tqdm(range(limit), desc=f"particles sweep {sweep.index}", unit="step"):
        going = [p for p, ps in enumerate(particles) if any(q.finish_reason is None for q in ps)]
        if not going:
            break
        live = [q for p in going for q in particles[p] if q.finish_reason is None]

        def samples(q: Particle, step: int = step) -> list[tuple[float, int]]:
            row = shard.first_index + q.problem
            return [(sweep.temperatures[q.slot], request_seed(settings.seed, row, sweep.index, q.slot, step))]

        def prune(q: Particle) -> None:
            q.finish_reason = "length"

        stepping, requests, pruned = step_requests(shard, live, False, samples, prune)
        warn_pruned("particle_filtering", step, pruned, shard.backend.max_model_len)
        last = step == limit - 1
        generated = generate_step(shard, requests, stepping, last)
        advance(shard, stepping, generated, sweep.temperatures, last, spent)
        for p in going:
            particles[p] = resample_problem(shard, sweep, particles[p], step, ess[p][-1])
    return particles


def advance(
    shard: Shard, stepping: list[Particle], step: Step, temperatures: list[float], last: bool, spent: list[list[int]]
) -> None:
    """Extend every stepping particle by its sampled step and score all of them in one PRM call; a
    particle whose step finished its solution finishes with the step's reason; one that took the last
    allowed step without finishing, with STEP_LIMIT (not `length`, a token limit's or a prune's)."""
    settings = shard.settings
    outputs = zip(stepping, step.outputs, step.rollouts, strict=True)
    texts = [(q.problem, q.text + out.text + rollout) for q, out, rollout in outputs]
    scores, read = score_texts(shard.prm, shard.problems, texts)
    for k, (q, out) in enumerate(zip(stepping, step.outputs, strict=True)):
        spent[q.problem][0] += out.num_tokens + step.rollout_tokens[k]
        spent[q.problem][1] += read[k]
        weight = resampling.log_weight(aggregate_steps(scores[k], settings.aggregation) if scores[k] else 0.0)
        ended = finishes(out, q.text + out.text, settings)
        q.taken.append(Taken(out.text, out.num_tokens, temperatures[q.slot], tuple(scores[k]), weight, out.token_ids))
        if ended or last:
            q.finish_reason = out.finish_reason if ended else STEP_LIMIT


def resample_problem(
    shard: Shard, sweep: Sweep, particles: list[Particle], step: int, ess: list[float]
) -> list[Particle]:
    """After `step`: draw the m - r free particles from all m by weight (each copy into its new slot,
    a reference cut back to step + 1 steps), then the r references; records the ESS of the weights."""
    settings = shard.settings
    refs = sweep.references[particles[0].problem]
    free = len(particles) - len(refs)
    seed = draw_seed(settings.seed, shard.first_index + particles[0].problem, sweep.index, step, RESAMPLE)
    log_weights = [q.log_weight for q in particles]
    drawn, probs = resample(log_weights, free, seed, settings.resampling, settings.weight_temperature)
    ess.append(resampling.effective_sample_size(probs))
    return [particles[i].copy_into(slot, step + 1) for slot, i in enumerate(drawn)] + refs


def resample(log_weights: Sequence[float], k: int, seed: int, scheme: str, temperature: float) -> tuple:
    """The one resampling draw of a step (a seam the reference cross-check observes)."""
    return resampling.resample(log_weights, k, seed, scheme, temperature)


def pick_references(shard: Shard, sweep: int, problem: int, particles: list[Particle], m: int) -> list[Particle]:
    """The references carried into the next sweep: `reference_particles` final particles drawn by
    weight (its_hub draws them after every sweep, the last one's unused), in slots m - r .. m - 1."""
    settings = shard.settings
    count = settings.reference_particles
    seed = draw_seed(settings.seed, shard.first_index + problem, sweep, 0, REFERENCE)
    drawn = resampling.choose([q.log_weight for q in particles], count, seed, settings.weight_temperature)
    return [particles[i].copy_into(m - count + j) for j, i in enumerate(drawn)]


def select(shard: Shard, problem: int, log_weights: Sequence[float]) -> int:
    """The returned particle: the first of the highest log weight, or one drawn by weight (`sample`)."""
    settings = shard.settings
    if settings.selection == "argmax":
        return int(np.argmax(log_weights))
    seed = draw_seed(settings.seed, shard.first_index + problem, settings.sweeps - 1, 0, SELECT)
    return resampling.choose(log_weights, 1, seed, settings.weight_temperature)[0]


def particle_result(
    shard: Shard, problem: int, particles: list[Particle], spent: list[int], ess: list[list[float]]
) -> SearchResult:
    """One problem's result: every final particle of the last sweep in slot order, with its weight."""
    log_weights = [q.log_weight for q in particles]
    weights = resampling.probabilities(log_weights, shard.settings.weight_temperature)
    return SearchResult(
        completions=[q.text for q in particles],
        completion_tokens=[sum(t.tokens for t in q.taken) for q in particles],
        temperatures=[q.taken[-1].temperature if q.taken else 0.0 for q in particles],
        groups=[q.slot for q in particles],
        finish_reasons=[q.finish_reason or "length" for q in particles],
        search_scores=[list(q.taken[-1].scores) if q.taken else [] for q in particles],
        generated_tokens=spent[0],
        prm_tokens=spent[1],
        weights=[float(w) for w in weights],
        selected=select(shard, problem, log_weights),
        ess=ess,
    )
