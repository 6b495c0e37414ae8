"""The process-reward-model interface: a score for every reasoning step of every completion.

Steps are separated by a blank line ("\\n\\n"), as the default prompt asks the model to write them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

STEP_SEPARATOR = "\n\n"


def split_steps(completion: str) -> list[str]:
    """Reasoning steps of a completion: non-empty chunks between blank lines."""
    return [step for step in completion.split(STEP_SEPARATOR) if step.strip()]


class PRM(ABC):
    """A judge that scores each step of a solution with a probability-like value in [0, 1]."""

    @abstractmethod
    def score(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """For problem i and its completions[i][j], return scores[i][j] = one float per step.

        Implementations batch all completions of all problems (similar lengths together) and
        score all steps of a completion in one forward pass.
        """
