"""The graders `sal evaluate --graders` can apply to one run, each giving every completion a class.

- `default`: this project's grader (sal_core.evaluation.grading): the last box's content, else the
  completion's last paragraph read by math-verify's default extraction; HTML exponents read as exponents;
  classes by math-verify's `verify`, with gold as class 0.
- `sal`: search-and-learn's answer rules and equality (sal_core.evaluation.sal_answers `extract_answer`,
  sal_core.evaluation.sal_equal `canonical_form` / `answers_equal`), without its protocol of first-n
  subsets: the completions it grades correct are class 0, the others are grouped by canonical form.
- `math-verify`: math-verify as shipped, `parse(completion)` and `verify(parse("\\boxed{gold}"), …)`
  with their default settings (LaTeX anywhere, then plain-text expressions; no HTML rewriting).

Every grader returns the same padded arrays (sal_core.evaluation.verdicts), so every vote, n and
interval is computed the same way for all of them; only which completions count as correct and
which answers vote together differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sal_core.errors import ConfigError
from sal_core.evaluation.graders_sal import grade_sal
from sal_core.evaluation.grading import MATH_VERIFY, NO_ANSWER, answer_key, grade_all
from sal_core.evaluation.verdicts import PAD, Verdicts

DEFAULT = "default"
GRADERS = (DEFAULT, "sal", "math-verify")


def parse_graders(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """A comma list (or list) of distinct grader names, the first driving the metrics; one error line."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"--graders: a list of distinct graders ({', '.join(GRADERS)}), got {value!r}")
    for name in names:
        if name not in GRADERS:
            raise ConfigError(f"--graders: {name!r} is not one of {', '.join(GRADERS)}")
    return names


def column(grader: str) -> str:
    """The metrics / accuracy table column of a grader's accuracy: accuracy_default, accuracy_math_verify."""
    return "accuracy_" + grader.replace("-", "_")


def grade_with(name: str, frame: pd.DataFrame, timeout: float, workers: int, progress: bool) -> Verdicts:
    """Grade every completion of a merged table with one grader."""
    golds = [str(a) for a in frame["answer"]]
    texts = [[str(t) if t is not None else "" for t in c] for c in frame["completions"]]
    if name == "sal":
        return grade_sal(golds, texts, timeout, workers, progress)
    if name == "math-verify":
        keys = [[MATH_VERIFY + t if t.strip() else None for t in c] for c in texts]
        gold_keys = [MATH_VERIFY + "\\boxed{" + g + "}" for g in golds]
        return _grade_keys(gold_keys, keys, timeout, workers, progress)
    keys = [[answer_key(t) for t in c] for c in texts]
    return _grade_keys(golds, keys, timeout, workers, progress)


def _grade_keys(
    golds: list[str], keys: list[list[str | None]], timeout: float, workers: int, progress: bool
) -> Verdicts:
    """Classes of every completion from its dedup key: each distinct key is graded once per problem."""
    distinct, positions = [], []
    for row in keys:
        order, pos = distinct_answers(row)
        distinct.append(order)
        positions.append(pos)
    grades = grade_all(golds, distinct, timeout=timeout, workers=workers, progress=progress)
    width = max((len(k) for k in keys), default=0)
    classes = np.full((len(keys), width), PAD, dtype=np.int64)
    for p, grade in enumerate(grades):
        lookup = np.asarray(grade.classes + [NO_ANSWER], dtype=np.int64)
        if keys[p]:
            classes[p, : len(keys[p])] = lookup[np.asarray(positions[p], dtype=np.int64)]
    timeouts = np.array([g.timeouts for g in grades], dtype=np.int64)
    return Verdicts(classes, timeouts, keys)


def distinct_answers(answers: list[str | None]) -> tuple[list[str], list[int]]:
    """Distinct answers, most frequent first (ties: first seen), and each completion's index (-1: none)."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, a in enumerate(answers):
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
            first.setdefault(a, i)
    order = sorted(counts, key=lambda a: (-counts[a], first[a]))
    position = {a: i for i, a in enumerate(order)}
    return order, [position[a] if a is not None else -1 for a in answers]
