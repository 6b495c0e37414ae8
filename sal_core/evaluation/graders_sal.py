"""The `sal` grader: search-and-learn's answer extraction and equality on every completion.

Answers are read by `extract_answer` (its boxed content, else the text after "the answer is", else
the last number: sal_core.evaluation.sal_answers) and checked against gold as its protocol checks a
winner: `answers_equal(extract_answer("\\boxed{" + answer + "}"), extract_answer("\\boxed{" + gold + "}"))`
(sal_core.evaluation.sal_equal, the Qwen2.5-Math harness's `math_equal`). Correct answers form class 0;
the others are grouped by `canonical_form`, as its votes group them. An empty extraction is no answer.
Checks run under `timeout` (SIGALRM in the worker); a problem whose worker hangs in C code past a
generous limit is re-run with string and number rules only and counted as one timeout, as
sal_core.evaluation.sal_protocol does.
"""

from __future__ import annotations

import numpy as np

from sal_core.evaluation.grading import NO_ANSWER
from sal_core.evaluation.guarded import run_guarded
from sal_core.evaluation.verdicts import PAD, Verdicts


def sal_problem(job: tuple[tuple[str, list[str], float], bool]) -> tuple[list[int], list[str], int]:
    """(class per completion, extracted answer per completion, timed-out checks) of one problem."""
    # imported here (in the worker, already loaded by run_guarded's warm-up): sympy and the LaTeX parser
    # stay out of the workflow's parse, which imports this module through the graders
    from sal_core.evaluation.sal_answers import extract_answer
    from sal_core.evaluation.sal_equal import answers_equal, canonical_form

    (gold_text, texts, timeout), symbolic = job
    gold = extract_answer("\\boxed{" + gold_text + "}")
    answers = [extract_answer(t) for t in texts]
    timeouts = 0
    class_of: dict[str, int] = {}
    by_form: dict[str, int] = {}
    for answer in dict.fromkeys(a for a in answers if a):
        equal, late = answers_equal(extract_answer("\\boxed{" + answer + "}"), gold, timeout, symbolic)
        timeouts += late
        if equal:
            class_of[answer] = 0
            continue
        form, late = canonical_form(answer, timeout, symbolic)
        timeouts += late
        class_of[answer] = by_form.setdefault(form, len(by_form) + 1)
    return [class_of[a] if a else NO_ANSWER for a in answers], answers, timeouts


def _limit(texts: list[str], timeout: float) -> float:
    return 60 + 2 * timeout * (len(texts) + 1)


def grade_sal(golds: list[str], texts: list[list[str]], timeout: float, workers: int, progress: bool) -> Verdicts:
    """Every problem in `workers` processes; a problem past its hard limit is re-run without sympy."""
    jobs = [(gold, problem, timeout) for gold, problem in zip(golds, texts, strict=True)]
    limits = [_limit(problem, timeout) for problem in texts]
    done, plain = run_guarded(sal_problem, jobs, limits, workers, "grading (sal grader)", progress)
    width = max((len(t) for t in texts), default=0)
    classes = np.full((len(golds), width), PAD, dtype=np.int64)
    for p in range(len(golds)):
        classes[p, : len(texts[p])] = done[p][0]
    timeouts = np.array([done[p][2] + (p in plain) for p in range(len(golds))])
    return Verdicts(classes, timeouts, [done[p][1] for p in range(len(golds))])
