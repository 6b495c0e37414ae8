"""Grading: extraction of the last boxed answer, equivalence classes with gold first, timeouts."""

import time

import pytest

from sal_core.evaluation.grading import (
    NO_ANSWER,
    _numeric,
    _parse,
    _surely_different,
    grade_all,
    grade_problem,
    last_boxed,
)


def test_last_boxed_takes_the_last_balanced_box():
    assert last_boxed(r"first \boxed{1} then $\boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{a} and a broken \boxed{b") == "a"
    assert last_boxed("no box here") is None
    assert last_boxed(r"\boxed{ }") is None
    assert last_boxed(r"\fbox{7}") == "7"


def test_equivalent_forms_share_the_gold_class():
    grade = grade_problem(r"\frac{1}{2}", [r"\frac12", "0.5", r"\dfrac{1}{2}", "3", "x = 3", "3.0", "7"])
    assert grade.classes[:3] == [0, 0, 0]
    assert grade.classes[3] == grade.classes[4] == grade.classes[5] != 0  # 3, x = 3, 3.0 together
    assert grade.classes[6] not in (0, grade.classes[3])
    assert grade.timeouts == 0


def test_unparseable_gold_makes_nothing_correct():
    grade = grade_problem("", ["1", "2"])
    assert grade.gold_failed and 0 not in grade.classes


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("3", "3.0000001"),
        (r"\frac13", "0.333333"),
        ("9\\%", "9"),
        (r"\sqrt{4}", "2"),
        ("2", "3"),
        (r"\sqrt{51}", "558"),
        ("6-5i", "7"),
    ],
)
def test_numeric_shortcut_agrees_with_verify(a, b):
    from math_verify import verify

    if _surely_different(_numeric(a), _numeric(b)):
        assert not verify(_parse(a), _parse(b), timeout_seconds=None)


def test_pathological_answer_times_out_without_hanging():
    start = time.monotonic()
    grades = grade_all(
        ["5", "2"], [["9^{9^{9^{9^{9}}}}", "(10^{10})!", "5", "6.0"], ["2"]], timeout=1.0, workers=2, progress=False
    )
    elapsed = time.monotonic() - start
    assert elapsed < 15, f"grading took {elapsed:.1f}s"
    first, second = grades
    assert first.timeouts >= 1
    assert first.classes[2] == 0  # the plain correct answer is still graded correct
    assert first.classes[0] != 0 and first.classes[1] != 0
    assert second.classes == [0] and second.timeouts == 0


def test_grade_all_matches_in_process_grading():
    golds = ["4", r"\frac{2}{3}", "(1, 2)"]
    answers = [["4", "4.0", "5", "x=4"], ["0.6667", r"\frac23", "2/3"], ["(1,2)", "(2,1)", "1"]]
    expected = [grade_problem(g, a).classes for g, a in zip(golds, answers, strict=True)]
    got = [g.classes for g in grade_all(golds, answers, timeout=10, workers=2, progress=False)]
    assert got == expected
    assert NO_ANSWER not in got[0]


def test_symbolic_answers_still_reach_verify():
    grade = grade_problem("2x + 2", ["2(x+1)", "x + 2 + x", "2x + 3", "2y + 2", "4"])
    assert grade.classes[:2] == [0, 0]
    assert 0 not in grade.classes[2:]
