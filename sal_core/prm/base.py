"""The process-reward-model interface: a score for every reasoning step of every completion.

Steps are separated by a blank line ("\\n\\n"), as the default prompt asks the model to write them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

STEP_SEPARATOR = "\n\n"


def split_steps(completion: str) -> list[str]:
    """Reasoning steps of a completion: non-empty chunks between blank lines."""
    return [step for step in completion.split(STEP_SEPARATOR) if step.strip()]


class Scored(NamedTuple):
    """A PRM call's answer: `scores[i][j]` = one float per step of completions[i][j], and
    `tokens[i][j]` = the tokens the model read for it (after truncation; 0 when nothing was scored)."""

    scores: list[list[list[float]]]
    tokens: list[list[int]]


class PRM(ABC):
    """A judge that scores each step of a solution with a probability-like value in [0, 1]."""

    @abstractmethod
    def score_with_tokens(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> Scored:
        """Step scores of every completions[i][j] of problem i, and the tokens read for each.

        Implementations batch all completions of all problems (similar lengths together) and
        score all steps of a completion in one forward pass. The token counts are the PRM's share
        of a run's compute (searches record them per problem, `sal score` per shard row).
        """

    def score(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """For problem i and its completions[i][j], return scores[i][j] = one float per step."""
        return self.score_with_tokens(problems, completions).scores
