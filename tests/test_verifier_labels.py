"""Held-out steps labelled by the verifier (sal_core/learn/verifier_labels.py; issue 27 item 3): the
label each kind of completion gets, what is dropped and counted, and a round trip through
`sal processbench`'s own loader and metrics, where the verifier benchmarked on its own labels scores
F1 = 100, and less once a label is moved."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sal_core.learn.processbench import run_processbench
from sal_core.learn.verifier_labels import COLUMNS, label_completions, verifier_label
from sal_core.prm.verifier import CHECKED, FALSE, NEUTRAL
from sal_core.settings.jobs import PRMSettings

# SmolLM2-135M's completions on arith_heldout (issue 27's greedy solution of "What is $6 \times 5$?",
# and the few-shot pattern of config/experiments/learn_cpu.yaml), with the arithmetic altered by hand
# where a case needs a false claim.
RIGHT = "## Step 1: Multiply\n$6 \\times 5 = 30$.\n\nTherefore, the final answer is: $\\boxed{30}$."
FALSE_FIRST = "## Step 1: Multiply\n$6 \\times 5 = 35$.\n\nTherefore, the final answer is: $\\boxed{35}$."
WRONG_BOX = "## Step 1: Multiply\n$6 \\times 5 = 30$.\n\nTherefore, the final answer is: $\\boxed{31}$."
WORDS = "## Step 1: Think about it\nWe multiply the numbers.\n\nThe answer is large."
LATE = "We multiply.\n\n$6 \\times 5 = 30$.\n\n$30 + 1 = 32$, so $\\boxed{32}$."


@pytest.mark.parametrize(
    ("text", "label"),
    [(RIGHT, -1), (FALSE_FIRST, 0), (WRONG_BOX, 1), (WORDS, None), (LATE, 2), ("", None)],
    ids=["right", "false-claim", "wrong-box", "nothing-to-check", "late-error", "empty"],
)
def test_each_completion_gets_the_verifiers_label(text: str, label: int | None) -> None:
    frame = pd.DataFrame({"problem_id": ["p"], "problem": ["What is $6 \\times 5$?"], "completions": [[text]]})
    samples, counts = label_completions([frame], split="arith")
    if label is None:
        assert samples.empty and sum(counts.values()) == 1
    else:
        assert samples["label"].tolist() == [label]
        assert samples["steps"].iloc[0] == [s for s in text.split("\n\n") if s.strip()]


def test_scores_map_to_labels() -> None:
    assert verifier_label([CHECKED, FALSE, FALSE]) == 1
    assert verifier_label([NEUTRAL, CHECKED]) == -1
    assert verifier_label([NEUTRAL, NEUTRAL]) is None
    assert verifier_label([]) is None


def test_duplicates_are_counted_once_per_problem() -> None:
    frame = pd.DataFrame(
        {
            "problem_id": ["a", "b"],
            "problem": ["What is $6 \\times 5$?"] * 2,
            "completions": [[RIGHT, RIGHT, FALSE_FIRST], [RIGHT, WORDS]],
        }
    )
    samples, counts = label_completions([frame], split="arith")
    assert list(samples.columns) == COLUMNS
    assert samples["id"].tolist() == ["a-0", "a-2", "b-0"]
    assert counts == {"duplicate": 1, "correct": 2, "error": 1, "nothing to check": 1}


def test_processbench_round_trip(tmp_path: Path) -> None:
    """The written samples load as ProcessBench data under their own split name; the verifier agrees
    with itself (F1 100), and not once one label is moved."""
    frame = pd.DataFrame(
        {
            "problem_id": [f"p{i}" for i in range(4)],
            "problem": ["What is $6 \\times 5$?"] * 4,
            "completions": [[RIGHT], [FALSE_FIRST], [WRONG_BOX], [LATE]],
        }
    )
    samples, _ = label_completions([frame], split="arith")
    verifier = PRMSettings(name="verifier", type="verifier")
    f1 = {}
    for name, labels in {"own": samples["label"], "moved": samples["label"].replace({2: 1})}.items():
        data = tmp_path / f"{name}.jsonl"
        samples.assign(label=labels).to_json(data, orient="records", lines=True)
        (table,) = run_processbench([verifier], tmp_path / name, data=str(data), splits=["arith"], plot=None)
        row = table.set_index("split").loc["arith"]
        assert (row["n_error"], row["n_correct"]) == (3, 1)
        f1[name] = row["f1"]
    assert f1["own"] == 100.0
    assert f1["moved"] < 100.0
