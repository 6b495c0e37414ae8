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

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.config import SearchSettings
from sal_core.prm.aggregation import aggregate_steps
from sal_core.prm.base import PRM
from sal_core.sampling import cycle_temperatures, derive_seed
from sal_core.search.common import (
    STEP_STOP,
    SearchResult,
    ends_solution,
    generate_step,
    new_token_budget,
    score_texts,
    warn_pruned,
)


@dataclass
class Leaf:
    """A completion returned by a subtree."""

    text: str
    tokens: int
    scores: list[float]
    finish_reason: str


@dataclass
class Subtree:
    """One subtree's current partial solution, and its completions once it has ended."""

    problem: int
    index: int
    temperature: float
    text: str = ""
    tokens: int = 0
    scores: list[float] = field(default_factory=list)
    leaves: list[Leaf] | None = None


def finish_subtree(
    tree: Subtree, candidates: Sequence[GenerationOutput], scores: Sequence[list[float]], last: bool, how: str
) -> None:
    """Advance `tree` by its best candidate, or end it (keeping only finished candidates) when the
    best candidate finished the solution or this was the last iteration."""
    best = max(range(len(candidates)), key=lambda c: (aggregate_steps(scores[c], how), -c))
    if last or ends_solution(candidates[best]):
        tree.leaves = [
            Leaf(tree.text + out.text, tree.tokens + out.num_tokens, list(score), out.finish_reason)
            for out, score in zip(candidates, scores, strict=True)
            if ends_solution(out)
        ]
        return
    tree.text += candidates[best].text
    tree.tokens += candidates[best].num_tokens
    tree.scores = list(scores[best])


def dvts(
    problems: Sequence[str],
    prompts: Sequence[str],
    settings: SearchSettings,
    backend: GenerationBackend,
    prm: PRM,
    first_index: int = 0,
) -> list[SearchResult]:
    """Run DVTS for all problems at once; per problem, the finished completions of every subtree,
    subtree by subtree (`groups` = subtree index). `first_index`: as for beam search."""
    width = settings.beam_width
    temperatures = cycle_temperatures(settings.n // width, settings.temperatures)
    trees = [
        [Subtree(problem=p, index=s, temperature=t) for s, t in enumerate(temperatures)] for p in range(len(prompts))
    ]

    for it in tqdm(range(settings.num_iterations), desc="dvts", unit="step"):
        last = it == settings.num_iterations - 1
        live = [tree for per_problem in trees for tree in per_problem if tree.leaves is None]
        if not live:
            break
        stepping, requests, pruned = [], [], []
        for tree in live:
            prompt = prompts[tree.problem] + tree.text
            budget = new_token_budget(backend, prompt, settings.max_tokens)
            if budget is None:
                tree.leaves = [Leaf(tree.text, tree.tokens, list(tree.scores), "length")]
                pruned.append(tree.problem)
                continue
            stop = () if last else STEP_STOP
            for c in range(width):
                seed = derive_seed(settings.seed, first_index + tree.problem, tree.index, c, it)
                requests.append(GenerationRequest(prompt, tree.temperature, settings.top_p, budget, stop, seed))
            stepping.append(tree)
        warn_pruned("dvts", it, pruned, backend.max_model_len)

        outputs, rollouts = generate_step(backend, requests, settings, last)
        items = [
            (tree.problem, tree.text + outputs[k].text + rollouts[k])
            for t, tree in enumerate(stepping)
            for k in range(t * width, (t + 1) * width)
        ]
        scores = score_texts(prm, problems, items)
        for t, tree in enumerate(stepping):
            block = slice(t * width, (t + 1) * width)
            finish_subtree(tree, outputs[block], scores[block], last, settings.aggregation)

    results = []
    for per_problem in trees:
        leaves = [(tree.index, tree.temperature, leaf) for tree in per_problem for leaf in tree.leaves or []]
        results.append(
            SearchResult(
                completions=[leaf.text for _, _, leaf in leaves],
                completion_tokens=[leaf.tokens for _, _, leaf in leaves],
                temperatures=[t for _, t, _ in leaves],
                groups=[g for g, _, _ in leaves],
                finish_reasons=[leaf.finish_reason for _, _, leaf in leaves],
                search_scores=[leaf.scores for _, _, leaf in leaves],
            )
        )
    return results
