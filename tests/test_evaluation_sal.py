"""`--protocol sal`: one test per rule of search-and-learn's scoring, on small hand-made frames.

Expected strings in the normalisation tables were produced by search-and-learn's own
`qwen_math_parser.py` / `memoized_canonical_form` (latex2sympy2 1.9.1), so they pin our
reimplementation to its behaviour, quirks included.
"""

import dataclasses
import json

import pandas as pd
import pytest

from sal_core.cli import main
from sal_core.evaluation.evaluate import EvalOptions
from sal_core.evaluation.sal_answers import extract_answer, strip_answer
from sal_core.evaluation.sal_equal import answers_equal, canonical_form
from sal_core.evaluation.sal_protocol import Task, sal_metrics, sal_sizes, solve, winners
from sal_core.tables import read_table

KEYS = {
    "dataset": "toy",
    "model": "m",
    "approach": "bon",
    "method": "best_of_n",
    "sampling": "default",
    "seed": "0",
    "prm": "p",
}
OPTIONS = EvalOptions(workers=1, progress=False, bootstrap=50, protocol="sal")


def boxed(answer: str) -> str:
    return "## Step 1: Work.\n\nTherefore, the final answer is: $\\boxed{" + answer + "}$. I hope it is correct."


def frame(completions: list[list[str]], last_scores: list[list[float]], gold: str = "7") -> pd.DataFrame:
    """One row per problem; each completion gets the step scores [0.5, last]."""
    return pd.DataFrame(
        {
            "problem_id": [str(i) for i in range(len(completions))],
            "answer": [gold] * len(completions),
            "completions": completions,
            "scores": [[[0.5, s] for s in row] for row in last_scores],
        }
    )


def accuracy(rows: pd.DataFrame, n: int, vote: str) -> float:
    return float(rows.set_index(["level", "n", "vote"]).loc[("all", n, vote), "accuracy"])


def test_sizes_are_the_powers_of_two_up_to_n():
    assert sal_sizes(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert sal_sizes(12) == [1, 2, 4, 8]  # N itself only when it is a power of two


def test_the_first_n_completions_are_used_not_a_random_subsample():
    data = frame([[boxed("3"), boxed("7"), boxed("7"), boxed("7")]], [[0.5] * 4])
    for seed in (0, 1):
        rows = sal_metrics(data, KEYS, dataclasses.replace(OPTIONS, seed=seed))
        # a random subsample of 1 would be right 3 times in 4; the first completion never is
        assert [accuracy(rows, 1, v) for v in ("majority", "naive", "weighted")] == [0.0, 0.0, 0.0]
        assert accuracy(rows, 4, "majority") == 1.0


def test_the_first_occurring_group_wins_a_tie():
    data = frame(
        [[boxed("7"), boxed("3"), boxed("3"), boxed("7")], [boxed("3"), boxed("7"), boxed("7"), boxed("3")]],
        [[0.5] * 4] * 2,
    )
    rows = sal_metrics(data, KEYS, OPTIONS)
    assert accuracy(rows, 4, "majority") == 0.5  # problem 0 right, problem 1 wrong: no fractional credit
    assert winners(["7", "3", "3", "7"], [0.5] * 4, 4)["weighted"] == 0


def test_a_completion_without_a_box_votes_with_its_last_number():
    no_box = "## Step 1: We compute 3 * 7 and simplify.\n\nI am not sure how to finish this problem."
    assert extract_answer(no_box) == "7"
    assert extract_answer("Nothing to see here.") == ""
    data = frame([[no_box, boxed("5"), no_box, boxed("4")]], [[0.5] * 4])
    rows = sal_metrics(data, KEYS, OPTIONS)
    assert accuracy(rows, 4, "majority") == 1.0  # the two unboxed "7"s outvote the boxed answers


def test_weighted_sums_the_last_step_scores():
    # step scores [0.5, last]: sums of last steps are 7 -> 0.9, 3 -> 0.8, so weighted picks 7;
    # summing first steps (0.5 each) would give 3 (two votes) and majority does pick 3
    data = frame([[boxed("7"), boxed("3"), boxed("3"), boxed("5")]], [[0.9, 0.4, 0.4, 0.0]])
    rows = sal_metrics(data, KEYS, OPTIONS)
    assert accuracy(rows, 4, "weighted") == 1.0
    assert accuracy(rows, 4, "majority") == 0.0


def test_naive_takes_the_first_of_the_best_scored_completions():
    data = frame(
        [[boxed("3"), boxed("7"), boxed("7"), boxed("3")], [boxed("7"), boxed("3"), boxed("3"), boxed("3")]],
        [[0.5, 0.9, 0.9, 0.9], [0.9, 0.9, 0.1, 0.1]],
    )
    rows = sal_metrics(data, KEYS, OPTIONS)
    assert accuracy(rows, 4, "naive") == 1.0  # first of the tied best is 7 in both problems
    assert winners(["3", "7", "7", "3"], [0.5, 0.9, 0.9, 0.9], 4)["naive"] == 1


def test_votes_are_grouped_by_canonical_form_and_answered_by_the_first_member():
    task = Task(
        [boxed("0.5"), boxed("\\dfrac{1}{2}"), boxed("2/4"), boxed("3"), boxed("3")], [0.5] * 5, "\\frac12", [8], 3.0
    )
    assert solve(task).correct["majority"] == [True]  # three forms of 1/2 outvote two 3s
    assert canonical_form("1.50")[0] == canonical_form("\\frac{3}{2}")[0]
    assert canonical_form("3,4")[0] != canonical_form("4,3")[0]  # 1.9.1 cannot read lists: strings differ


@pytest.mark.parametrize(
    ("raw", "stripped"),
    [
        ("x = 5", "5"),
        ("5.0", "5"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\text{Evelyn}", "Evelyn"),
        ("10\\text{ cm}", "10"),
        ("1 \\pm \\sqrt{19}", "1\\\\sqrt{19}"),  # the unit word "pm" goes
        ("\\frac12", "\\frac{1}{2}"),
        ("3/4", "\\frac{3}{4}"),
        ("one hundred twenty three", "123"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("\\frac{a}{b}", "\\frac{}{b}"),  # and so does the unit word "a"
        ("0.50", "0.50"),
        ("007", "7"),
    ],
)
def test_answers_are_normalised_as_search_and_learn_does(raw, stripped):
    assert strip_answer(raw) == stripped


@pytest.mark.parametrize(
    ("pred", "gold", "equal"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("50", "0.5", True),  # percentages: gold x 100 also counts
        ("[1,2]", "(1,2)", True),
        ("y=2x+1", "y=1+2x", True),
        ("9)\\cup(7", "9)\\cup(9", True),  # 1.9.1 reads only the prefix "9"
        ("1\\sqrt{19}", "1\\sqrt{79}", False),
        ("C", "\\text{(C)}", False),
        ("", "0", False),
    ],
)
def test_correctness_is_search_and_learns_math_equal(pred, gold, equal):
    assert answers_equal(pred, gold)[0] is equal


def test_cli_writes_the_default_schema_with_pass_at_k(tmp_path):
    path = tmp_path / "merged.jsonl"
    rows = [
        {
            "problem_id": "a",
            "answer": "7",
            "level": 1,
            "completions": [boxed("7"), boxed("3")],
            "scores": [[0.2], [0.9]],
            "completion_tokens": [10, 30],
        },
        {
            "problem_id": "b",
            "answer": "2",
            "level": 2,
            "completions": [boxed("2"), boxed("2")],
            "scores": [[0.5], [0.4]],
            "completion_tokens": [5, 5],
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(
        [
            "evaluate",
            "--merged",
            str(path),
            "--out",
            str(tmp_path / "default.parquet"),
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    main(
        [
            "evaluate",
            "--merged",
            str(path),
            "--out",
            str(tmp_path / "sal.parquet"),
            "--protocol",
            "sal",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    default, sal = read_table(tmp_path / "default.parquet"), read_table(tmp_path / "sal.parquet")
    assert list(sal.columns) == list(default.columns)
    assert set(sal["vote"]) == {"majority", "naive", "weighted", "pass@k"}
    assert accuracy(sal, 2, "naive") == 0.5  # a: 3 scores 0.9; b: 2
    assert accuracy(sal, 1, "pass@k") == 0.75
    at = sal.set_index(["level", "n", "vote"])
    assert at.loc[("all", 2, "majority"), "mean_tokens"] == 25.0  # (10 + 30 + 5 + 5) / 2 problems
    assert at.loc[("1", 2, "weighted"), "num_problems"] == 1


def _hangs_with_sympy(job: tuple[str, bool]) -> tuple[str, bool]:
    """A job that hangs (as a C-level sympy hang would) unless re-run without sympy."""
    import time

    value, symbolic = job
    if symbolic and value == "hang":
        time.sleep(60)
    return value, symbolic


def test_a_job_past_its_hard_limit_is_rerun_without_sympy_and_the_others_are_kept() -> None:
    """The guard both search-and-learn's protocol and the `sal` grader run under (run_guarded)."""
    from sal_core.evaluation.sal_protocol import run_guarded

    results, plain = run_guarded(_hangs_with_sympy, ["a", "hang", "b"], [30.0, 1.0, 30.0], 2, "test", False)
    assert results == [("a", True), ("hang", False), ("b", True)] and plain == {1}
