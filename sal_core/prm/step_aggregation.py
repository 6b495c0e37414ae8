"""Turning a completion's step scores into one number: the last step, the weakest step, or the product.

Shared by the search (ranking beams) and the evaluation (naive / weighted best-of-n), so both rank alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sal_core.constants import AGGREGATIONS


def aggregate_steps(step_scores: Sequence[float], how: str = "last") -> float:
    """One score for a completion; a completion with no scored step gets 0 (it never wins)."""
    if len(step_scores) == 0:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    raise ValueError(f"unknown step-score aggregation {how!r}; use one of {', '.join(AGGREGATIONS)}")
