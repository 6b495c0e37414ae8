"""Difficulty levels: one spelling for every dataset, and one order for tables and figures."""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def normalise_level(level: object) -> str | None:
    """'Level 3', 3 and '3' all become '3'; missing levels are None."""
    if level is None or (isinstance(level, float) and math.isnan(level)):
        return None
    text = str(level).strip()
    match = re.fullmatch(r"(?i)level\s*(\S+)", text)
    return match.group(1) if match else (text or None)


def level_sort_key(level: str) -> tuple:
    """Numeric levels first, in numeric order ('2' before '10'), then named ones alphabetically."""
    text = str(level)
    return (0, float(text), "") if _NUMBER.fullmatch(text) else (1, 0.0, text)


def natural_key(name: object) -> tuple:
    """Names in natural order, their numbers read as numbers: t0.9 < t1.0 < t10, seed 2 < seed 10
    (samplings, runs, seeds and models in every table and figure)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name)))
