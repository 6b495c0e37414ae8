"""What a grader returns for a run: one class per completion, in padded per-problem arrays.

The lowest grading fact, shared by every grader (sal_core.evaluation.graders, graders_sal) and read by
the votes (sal_core.evaluation.votes), so that no grader imports another to get it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: class id of padding past a problem's last completion (a completion without an answer is
#: sal_core.evaluation.grading.NO_ANSWER = -1)
PAD = -2


@dataclass
class Verdicts:
    """One grader's reading of a run: class per completion (0 = correct; NO_ANSWER; PAD beyond a
    problem's completions), timed-out checks per problem, and each completion's answer as the grader
    read it (its dedup key: a box's content or a marked text, search-and-learn's extracted answer)."""

    classes: np.ndarray
    timeouts: np.ndarray
    answers: list[list[str | None]]

    def correct(self) -> np.ndarray:
        return self.classes == 0
