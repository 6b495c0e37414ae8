"""Diverse verifier tree search (DVTS): n / beam_width independent subtrees per problem.

Each subtree keeps one partial solution; every iteration it samples beam_width candidate next
steps, the PRM scores them, and the best becomes the subtree's new partial solution. A subtree ends
when its best candidate finishes the solution (or in the last iteration, which drops the step stop
string). It then returns those of its final candidates that actually finished: search-and-learn
returns all of them, so unfinished ones reached answer parsing and counted as wrong.
All subtrees of all problems share ONE generate call and ONE PRM call per iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from sal_core.backends.base import GenerationOutput
from sal_core.prm.step_aggregation import aggregate_steps
from sal_core.search.results import Completion, SearchResult, guided_result
from sal_core.search.steps import Shard, ends_solution, generate_step, score_texts, step_requests, warn_pruned
from sal_core.search.temperatures import cycle_temperatures, derive_seed


@dataclass
class Subtree:
    """One subtree's current partial solution, and its completions once it has ended."""

    problem: int
    index: int
    temperature: float
    text: str = ""
    tokens: int = 0
    scores: list[float] = field(default_factory=list)
    leaves: list[Completion] | None = None


def finish_subtree(
    tree: Subtree, candidates: Sequence[GenerationOutput], scores: Sequence[list[float]], last: bool, how: str
) -> None:
    """Advance `tree` by its best candidate, or end it (keeping only finished candidates) when the
    best candidate finished the solution or this was the last iteration."""
    best = max(range(len(candidates)), key=lambda c: (aggregate_steps(scores[c], how), -c))
    if last or ends_solution(candidates[best]):
        tree.leaves = [
            Completion(
                tree.text + out.text,
                tree.tokens + out.num_tokens,
                tree.temperature,
                tree.index,
                out.finish_reason,
                list(score),
            )
            for out, score in zip(candidates, scores, strict=True)
            if ends_solution(out)
        ]
        return
    tree.text += candidates[best].text
    tree.tokens += candidates[best].num_tokens
    tree.scores = list(scores[best])


def dvts(shard: Shard) -> list[SearchResult]:
    """Run DVTS for all problems of the shard at once; per problem, the finished completions of every
    subtree, subtree by subtree (`groups` = subtree index)."""
    settings, prompts = shard.settings, shard.prompts
    width = settings.beam_width
    temperatures = cycle_temperatures(settings.n // width, settings.temperatures)
    trees = [
        [Subtree(problem=p, index=s, temperature=t) for s, t in enumerate(temperatures)] for p in range(len(prompts))
    ]

    def prune(tree: Subtree) -> None:
        tree.leaves = [Completion(tree.text, tree.tokens, tree.temperature, tree.index, "length", list(tree.scores))]

    for it in tqdm(range(settings.num_iterations), desc="dvts", unit="step"):
        last = it == settings.num_iterations - 1
        live = [tree for per_problem in trees for tree in per_problem if tree.leaves is None]
        if not live:
            break

        def samples(tree: Subtree, it: int = it) -> list[tuple[float, int]]:
            row = shard.first_index + tree.problem
            return [(tree.temperature, derive_seed(settings.seed, row, tree.index, c, it)) for c in range(width)]

        stepping, requests, pruned = step_requests(shard, live, last, samples, prune)
        warn_pruned("dvts", it, pruned, shard.backend.max_model_len)
        outputs, rollouts = generate_step(shard.backend, requests, settings, last)
        items = [
            (tree.problem, tree.text + outputs[k].text + rollouts[k])
            for t, tree in enumerate(stepping)
            for k in range(t * width, (t + 1) * width)
        ]
        scores = score_texts(shard.prm, shard.problems, items)
        for t, tree in enumerate(stepping):
            block = slice(t * width, (t + 1) * width)
            finish_subtree(tree, outputs[block], scores[block], last, settings.aggregation)

    return [guided_result([leaf for tree in per_problem for leaf in tree.leaves or []]) for per_problem in trees]
