"""Diverse verifier tree search (DVTS): n / beam_width independent subtrees per problem
(search-and-learn `src/sal/search/diverse_verifier_tree_search.py`, with hotncold's temperatures).

Each subtree keeps one partial solution; every iteration it samples beam_width candidate next
steps, candidate c at entry c of the beam_width-long temperature list (so every subtree meets every
temperature), the PRM scores them, and the best becomes the subtree's new partial solution. A
subtree ends when its best candidate ends the solution (end of sequence, token limit, empty step),
when its text then contains `boxed{` (search-and-learn's DVTS rule; `stop_at_boxed: false` turns it
off), or in the last iteration, which drops the step stop string. It then returns the candidates
of that last expansion that finished; search-and-learn returns all beam_width of them, finished or
not (`keep_unfinished: true`). All subtrees of all problems share ONE generate call and ONE PRM
call per iteration; every token generated or read by the PRM is charged to its subtree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from sal_core.backends.base import GenerationOutput
from sal_core.prm.step_aggregation import aggregate_steps
from sal_core.search.continuation import StepIds
from sal_core.search.results import Completion, SearchResult, guided_result
from sal_core.search.steps import Shard, Step, finishes, generate_step, score_texts, step_requests, warn_pruned
from sal_core.search.temperatures import derive_seed, temperature_list
from sal_core.settings.jobs import SearchSettings


@dataclass
class Subtree:
    """One subtree's current partial solution (`temperature`: the one that sampled its last step),
    its completions once it has ended, and the tokens it cost."""

    problem: int
    index: int
    temperature: float
    text: str = ""
    tokens: int = 0
    scores: list[float] = field(default_factory=list)
    leaves: list[Completion] | None = None
    generated: int = 0
    prm_read: int = 0
    #: the generated ids of each step of `text` (search.continuation)
    step_ids: tuple[StepIds, ...] = ()


def finish_subtree(
    tree: Subtree,
    candidates: Sequence[GenerationOutput],
    scores: Sequence[list[float]],
    temperatures: Sequence[float],
    last: bool,
    settings: SearchSettings,
) -> None:
    """Advance `tree` by its best candidate (first best on ties), or end it when that candidate ends
    the solution, states a boxed answer (`stop_at_boxed`) or this was the last iteration; an ended
    subtree keeps its finished candidates (all of them with `keep_unfinished`)."""
    best = max(range(len(candidates)), key=lambda c: (aggregate_steps(scores[c], settings.aggregation), -c))

    def finished(out: GenerationOutput) -> bool:
        return finishes(out, tree.text + out.text, settings)

    if last or finished(candidates[best]):
        tree.leaves = [
            Completion(tree.text + out.text, tree.tokens + out.num_tokens, t, tree.index, out.finish_reason, list(s))
            for out, s, t in zip(candidates, scores, temperatures, strict=True)
            if settings.keep_unfinished or finished(out)
        ]
        return
    tree.text += candidates[best].text
    tree.step_ids += (candidates[best].token_ids,)
    tree.tokens += candidates[best].num_tokens
    tree.scores = list(scores[best])
    tree.temperature = temperatures[best]


def dvts(shard: Shard) -> list[SearchResult]:
    """Run DVTS for all problems of the shard at once; per problem, the finished completions of every
    subtree, subtree by subtree (`groups` = subtree index)."""
    settings, prompts = shard.settings, shard.prompts
    width = settings.beam_width
    temperatures = temperature_list(width, settings.temperatures, settings.temperature_ratios)
    trees = [
        [Subtree(problem=p, index=s, temperature=temperatures[0]) for s in range(settings.n // width)]
        for p in range(len(prompts))
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
            return [(temperatures[c], derive_seed(settings.seed, row, tree.index, c, it)) for c in range(width)]

        stepping, requests, pruned = step_requests(shard, live, last, samples, prune)
        warn_pruned("dvts", it, pruned, shard.backend.max_model_len)
        step = generate_step(shard, requests, [tree for tree in stepping for _ in range(width)], last)
        _expand(shard, stepping, step, temperatures, last)

    return [_result(per_problem) for per_problem in trees]


def _expand(shard: Shard, stepping: list[Subtree], step: Step, temperatures: list[float], last: bool) -> None:
    """Score every subtree's beam_width candidates (step + lookahead rollout) in one PRM call,
    charge each subtree its tokens, and advance or end it."""
    width = shard.settings.beam_width
    outputs = step.outputs
    items = [
        (tree.problem, tree.text + outputs[k].text + step.rollouts[k])
        for t, tree in enumerate(stepping)
        for k in range(t * width, (t + 1) * width)
    ]
    scores, read = score_texts(shard.prm, shard.problems, items)
    for t, tree in enumerate(stepping):
        block = slice(t * width, (t + 1) * width)
        tree.generated += sum(out.num_tokens for out in outputs[block]) + sum(step.rollout_tokens[block])
        tree.prm_read += sum(read[block])
        finish_subtree(tree, outputs[block], scores[block], temperatures, last, shard.settings)


def _result(trees: Sequence[Subtree]) -> SearchResult:
    """One problem's completions, subtree by subtree, with its compute per subtree and in total."""
    result = guided_result([leaf for tree in trees for leaf in tree.leaves or []])
    result.subtree_tokens = [tree.generated for tree in trees]
    result.subtree_prm_tokens = [tree.prm_read for tree in trees]
    result.generated_tokens = sum(result.subtree_tokens)
    result.prm_tokens = sum(result.subtree_prm_tokens)
    return result
