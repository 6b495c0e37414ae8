"""Step labels from the verifier: a ProcessBench-style benchmark made from a run's own completions.

ProcessBench's problems are GSM8K and MATH, far from the one-operation arithmetic a PRM trained by
the CPU learn loop has seen. These samples are that arithmetic: every distinct completion of a merged
run, cut into the steps every PRM scores (`split_steps`, blank lines), labelled as ProcessBench labels
a sample (`label`: the earliest wrong step, -1 when none is) by the verifier (sal_core.prm.verifier):

| the verifier's step scores                      | label                       |
|-------------------------------------------------|-----------------------------|
| some step FALSE (a false claim, a wrong answer) | the first such step's index |
| no step FALSE, at least one CHECKED             | -1                          |
| every step NEUTRAL (nothing to check)           | no sample (counted)         |

The labels are the verifier's, not a gold reading: a step whose arithmetic holds but answers another
question than the problem asks is "correct" here, as it is to the verifier. `sal_core.learn.processbench`
then benchmarks any PRM on them unchanged (its data may be a .jsonl with a `split` column).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pandas as pd

from sal_core.learn.processbench import earliest_error
from sal_core.prm.base import split_steps
from sal_core.prm.verifier import CHECKED, NEUTRAL, VerifierPRM
from sal_core.settings.jobs import PRMSettings

#: the columns `sal_core.learn.processbench.load_processbench` reads
COLUMNS = ["split", "id", "problem", "steps", "label"]


def verifier_label(scores: list[float]) -> int | None:
    """ProcessBench's label from the verifier's step scores: the first FALSE step, -1 when none is
    and some step was checked, None when nothing could be checked."""
    first_false = earliest_error(scores, NEUTRAL)  # FALSE is the only score below NEUTRAL
    if first_false >= 0:
        return first_false
    return -1 if CHECKED in scores else None


def label_completions(frames: Iterable[pd.DataFrame], split: str) -> tuple[pd.DataFrame, Counter[str]]:
    """Samples (COLUMNS) from the merged tables' completions, each distinct (problem, completion) once,
    and the counts of what was kept and dropped."""
    verifier = VerifierPRM(PRMSettings.from_dict({"name": "verifier", "type": "verifier"}, "verifier"))
    counts: Counter[str] = Counter()
    rows, seen = [], set()
    for frame in frames:
        for row in frame.itertuples(index=False):
            for j, text in enumerate(row.completions):
                key = (str(row.problem_id), text)
                if key in seen:
                    counts["duplicate"] += 1
                    continue
                seen.add(key)
                steps = split_steps(text)
                if not steps:
                    counts["empty"] += 1
                    continue
                found: Counter[str] = Counter()
                label = verifier_label(verifier.score_completion(text, found))
                if label is None:
                    counts["nothing to check"] += 1
                    continue
                counts["error" if label >= 0 else "correct"] += 1
                rows.append([split, f"{row.problem_id}-{j}", str(row.problem), steps, label])
    return pd.DataFrame(rows, columns=COLUMNS), counts
