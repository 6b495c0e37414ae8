"""Grading: extraction of the last boxed answer, equivalence classes with gold first, timeouts."""

import time

import pytest

from sal_core.evaluation.graders import grade_with
from sal_core.evaluation.grading import (
    NO_ANSWER,
    _numeric,
    _parse,
    _surely_different,
    answer_key,
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


# No regression against math-verify (issue 21). Cases from math-verify's own regression tests
# (huggingface/Math-Verify, tests/test_all.py: test_number_extraction, test_latex_notation,
# test_percent_notation; gold answers without their `$`), read as whole completions, and the two kinds
# our grader used to miss: an answer in a plain-text sentence and an exponent written in HTML.
MATH_VERIFY_EQUIVALENTS = [
    ("-5", "-5"),
    ("7425000", "7,425,000"),
    ("1000", "1000.0"),
    ("1000.99", "1,000.99"),
    ("0.4", ".4"),
    ("1000.99", "$1,000.99"),
    ("1000.99", "the number is not 10 which is 1,000.99€"),
    ("1000.99", "so the number is 10 which is 1,000.99m²"),
    ("9", "Answer \\[ 9 \\]"),
    ("9", "Answer $ 9 $"),
    ("9", "Answer $$ 9 $$"),
    ("10", "Answer \\( (9+1) \\)"),
    ("\\frac{10}{9}", "Answer $ \\frac{1}{2} \\$ = \\frac{10}{9} $"),
    ("1/3", "$\\frac13 $"),
    ("\\sqrt{3}", "$\\sqrt3 $"),
    ("1/3", "$\\dfrac{1}{3} $"),
    ("1/3", "$\\left( \\frac{1}{3} \\right)$"),
    ("1/3", "$k = \\frac{1}{3}$"),
    ("1/3", "$\\frac{1}{3} \\textbf{meters}$"),
    ("28\\%", "28 percent"),
    ("28\\%", "$28$ %"),
    ("28\\%", "$\\boxed{28}$ pct"),
    ("\\frac{3}{4}", "The answer is 3/4"),
    ("1024", "The final answer is 1024."),
    ("1024", "Final Answer: The final answer is $1024$. I hope it is correct."),
    ("1024", "The answer is 2^10"),
]
#: HTML exponents: math-verify reads `2<sup>10</sup>` as 2 (or as the string itself); ours as 2^10
HTML_EQUIVALENTS = [
    ("1024", "So it is \\boxed{2<sup>10</sup>}."),
    ("1024", "The answer is 2<sup>10</sup>."),
    ("x^{2}+1", "\\boxed{x<sup>2</sup>+1}"),
    ("2^{n+1}", "\\boxed{2<sup>n+1</sup>}"),
]
#: wrong answers math-verify rejects (its tests' expected 0, and near misses): ours still rejects them
WRONG = [
    ("2", "AZYUK2A"),
    ("0.28", "28"),
    ("28", "28/100"),
    ("1025", "So it is \\boxed{2<sup>10</sup>}."),
    ("1025", "The final answer is 1024."),
    ("\\frac{3}{4}", "The answer is 4/3"),
    ("2", "The answer is 2<sup>10</sup>."),  # math-verify reads 2 and accepts it; ours reads 2^10
    ("7", "I give up."),
]


def _ours(gold: str, text: str) -> bool:
    key = answer_key(text)
    return key is not None and grade_problem(gold, [key]).classes == [0]


def _math_verify(gold: str, text: str) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse("\\boxed{" + gold + "}"), parse(text)))


@pytest.mark.parametrize(("gold", "text"), MATH_VERIFY_EQUIVALENTS)
def test_accepts_every_equivalent_math_verify_accepts(gold, text):
    assert _math_verify(gold, text)  # math-verify's default settings accept it ...
    assert _ours(gold, text)  # ... and so does ours


@pytest.mark.parametrize(("gold", "text"), HTML_EQUIVALENTS)
def test_reads_html_exponents(gold, text):
    assert _ours(gold, text)


@pytest.mark.parametrize(("gold", "text"), WRONG)
def test_still_rejects_wrong_answers(gold, text):
    assert not _ours(gold, text)


def test_the_graders_read_the_same_completions_differently():
    import pandas as pd

    texts = ["So it is \\boxed{2<sup>10</sup>}.", "The final answer is 1024.", "The answer is 2<sup>10</sup>.", "zz"]
    frame = pd.DataFrame({"answer": ["1024"], "completions": [texts]})
    got = {name: grade_with(name, frame, 5.0, 1, False) for name in ("default", "sal", "math-verify")}
    assert got["default"].correct()[0].tolist() == [True, True, True, False]
    assert got["sal"].correct()[0].tolist() == [False, True, False, False]
    assert got["math-verify"].correct()[0].tolist() == [False, True, False, False]
    assert got["sal"].answers[0][:2] == ["2<sup>10</sup>", "1024"]
    assert got["default"].classes[0, 3] == NO_ANSWER  # nothing math-verify can read: no answer, as before


def test_an_unfinished_solution_without_a_box_still_has_no_answer():
    """Only the closing paragraph is read: a number in the working is no final answer."""
    text = "## Step 1\nWe compute 3 * 4 = 12 and simplify.\n\nI am not sure how to finish this problem."
    assert grade_problem("12", [answer_key(text)]).classes == [NO_ANSWER]
    assert _ours("12", "## Step 1\nWe compute 3 * 4.\n\nThe final answer is 12.")
