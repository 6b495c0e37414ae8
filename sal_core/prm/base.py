"""The process-reward-model interface: a score for every reasoning step of every completion.

Steps are separated by a blank line ("\\n\\n"), as the default prompt asks the model to write them.
`scored_steps` is the one place that decides which steps a PRM scores (so the PRMs, `sal score`'s
reuse of search scores and any check of step counts agree):

- layout "default": the non-empty chunks between blank lines (a partial solution's trailing "\\n\\n"
  adds no step);
- layout "sal", as search-and-learn (`src/sal/models/reward_models.py`): `completion.split("\\n\\n")`
  with empty chunks kept (so a partial solution ending in "\\n\\n" is scored on an empty last
  step) for rlhflow and qwen2.5-math; the same without the trailing empty chunk for math-shepherd
  (whose " ки" tags follow each "\\n\\n"-ended chunk); every line, blank ones included, for skywork
  (`skywork_o1_prm/io_utils.py` splits at "\\n").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from sal_core.constants import STEP_SEPARATOR


def split_steps(completion: str) -> list[str]:
    """Reasoning steps of a completion: non-empty chunks between blank lines."""
    return [step for step in completion.split(STEP_SEPARATOR) if step.strip()]


def scored_steps(completion: str, prm_type: str, layout: str = "default") -> list[str]:
    """The steps a PRM of `prm_type` scores in `completion` under `layout` (see the module docstring)."""
    if layout == "default":
        return split_steps(completion)
    if prm_type == "skywork":
        return completion.split("\n")
    chunks = completion.split(STEP_SEPARATOR)
    if prm_type == "math-shepherd" and completion.endswith(STEP_SEPARATOR):
        return chunks[:-1]
    return chunks


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
