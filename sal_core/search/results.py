"""What a search returns for one problem: its completions as parallel lists, one entry per completion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class SearchResult:
    """All completions of one problem, parallel lists (one entry per completion).

    `groups` is the DVTS subtree of each completion (Best-of-N and beam search: its own index;
    particle filtering: its particle slot);
    `search_scores` the in-search PRM's step scores (None for Best-of-N, which uses no PRM).

    The compute spent on the problem, beyond the returned paths' `completion_tokens`:
    `generated_tokens`, every token the policy generated for it (pruned beams, DVTS candidates not
    chosen, lookahead rollouts included); `prm_tokens`, every token the in-search PRM read for it
    (0 for Best-of-N). DVTS also splits both per subtree (`subtree_tokens`, `subtree_prm_tokens`,
    indexed by subtree, summing to the totals), so a budget of fewer subtrees can be charged.
    """

    completions: list[str]
    completion_tokens: list[int]
    temperatures: list[float]
    groups: list[int]
    finish_reasons: list[str]
    search_scores: list[list[float]] | None = None
    generated_tokens: int = 0
    prm_tokens: int = 0
    subtree_tokens: list[int] | None = None
    subtree_prm_tokens: list[int] | None = None
    #: particle filtering: each completion's final normalised weight, the index of the completion the
    #: search selects, and the effective sample size after each step (one list per sweep)
    weights: list[float] | None = None
    selected: int | None = None
    ess: list[list[float]] | None = None

    def __post_init__(self) -> None:
        lengths = {len(self.completion_tokens), len(self.temperatures), len(self.groups), len(self.finish_reasons)}
        if self.search_scores is not None:
            lengths.add(len(self.search_scores))
        if self.weights is not None:
            lengths.add(len(self.weights))
        if lengths != {len(self.completions)}:
            raise ValueError(f"SearchResult lists differ in length: {lengths | {len(self.completions)}}")


@dataclass
class Completion:
    """One finished path of a guided search (a beam, or a DVTS subtree's candidate)."""

    text: str
    tokens: int
    temperature: float
    group: int
    finish_reason: str
    scores: list[float]


def guided_result(completions: Sequence[Completion]) -> SearchResult:
    """The SearchResult of a beam search or DVTS problem, in the order given (compute not yet filled in)."""
    return SearchResult(
        completions=[c.text for c in completions],
        completion_tokens=[c.tokens for c in completions],
        temperatures=[c.temperature for c in completions],
        groups=[c.group for c in completions],
        finish_reasons=[c.finish_reason for c in completions],
        search_scores=[list(c.scores) for c in completions],
    )
