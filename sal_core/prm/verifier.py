"""The verifier: a PRM that needs no model. It checks the arithmetic each step claims, exactly.

Each step (sal_core.prm.base.scored_steps) is read by sal_core.prm.claims.check_step, carrying the
last value the solution stated from step to step, and scored:

| step                                                            | score          |
|-----------------------------------------------------------------|----------------|
| a false claim, or a boxed answer that is not the last value     | FALSE = 0.05   |
| otherwise: a claim that holds, or a boxed answer that is it     | CHECKED = 0.95 |
| nothing to check (words, algebra, rounding, unreadable)         | NEUTRAL = 0.5  |

0.05 and 0.95 rather than 0 and 1 keep a particle's log weight finite and in the range a trained
PRM's scores give (logit ±2.9); 0.5 makes an unchecked step neither help nor hurt a beam under `last`.
It does not read the problem statement (the `problems` argument is ignored): it judges only whether a
solution's own arithmetic is right, so it cannot know the answer to a one-operation problem and a
search it guides is no oracle upper bound (docs/search.md, *The verifier*). It reads no tokens and
charges none (`tokens` 0 for every completion). Text it cannot read scores neutral, is counted, and
each call logs the counts; nothing in a completion makes it raise.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from sal_core.prm.base import PRM, Scored, scored_steps
from sal_core.prm.claims import StepCheck, check_step
from sal_core.settings.jobs import PRMSettings

log = logging.getLogger(__name__)

FALSE, CHECKED, NEUTRAL = 0.05, 0.95, 0.5


def step_score(check: StepCheck) -> float:
    """A step's score from what it holds: any false claim or wrong answer decides, then any check."""
    if check.false or check.boxed is False:
        return FALSE
    if check.true or check.boxed:
        return CHECKED
    return NEUTRAL


class VerifierPRM(PRM):
    """Step scores from exact arithmetic; `counts` sums what every call found (steps by verdict, and
    sides or answers it could not read)."""

    def __init__(self, settings: PRMSettings) -> None:
        self.settings = settings
        self.counts: Counter[str] = Counter()

    def score_with_tokens(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> Scored:
        found: Counter[str] = Counter()
        scores = [[self.score_completion(text, found) for text in texts] for texts in completions]
        self.counts.update(found)
        log.info(
            "verifier %s: %d steps, %d checked, %d false, %d with nothing to check; %d unreadable (neutral)",
            self.settings.name,
            found["steps"],
            found["checked"],
            found["false"],
            found["neutral"],
            found["unparsed"],
        )
        return Scored(scores, [[0] * len(texts) for texts in completions])

    def score_completion(self, completion: str, found: Counter[str]) -> list[float]:
        """One score per step, each step read with the last value the steps before it stated."""
        last: Fraction | None = None
        scores = []
        for step in scored_steps(completion, self.settings.type, self.settings.step_layout):
            try:
                check = check_step(step, last)
            except (ArithmeticError, ValueError, RecursionError):  # e.g. parentheses nested past the stack
                check = StepCheck(unparsed=1, last=last)
            last = check.last
            score = step_score(check)
            scores.append(score)
            found.update(steps=1, unparsed=check.unparsed)
            found[{FALSE: "false", CHECKED: "checked", NEUTRAL: "neutral"}[score]] += 1
        return scores
