"""ProcessBench: the paper's metric on hand-computed cases (including a PRM that never flags an error
and one that always flags step 0), the earliest-error rule, the shipped subset, and a real tiny PRM
end to end through `sal processbench` with one PRM call per split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from sal_core.cli import main
from sal_core.errors import DatasetError
from sal_core.learn.processbench import (
    SPLITS,
    as_completion,
    earliest_error,
    load_processbench,
    predict,
    processbench_metrics,
    summary_table,
)
from sal_core.prm import load_prm, split_steps
from sal_core.settings.jobs import PRMSettings

# 3 erroneous samples (labels 0, 2, 1) and 2 correct ones
LABELS = [0, 2, 1, -1, -1]


def test_always_correct_prm_has_zero_error_accuracy() -> None:
    metrics = processbench_metrics(LABELS, [-1] * 5)
    assert metrics == {"n_error": 3, "n_correct": 2, "error_acc": 0.0, "correct_acc": 100.0, "f1": 0.0}


def test_prm_flagging_step_zero_has_zero_correct_accuracy() -> None:
    metrics = processbench_metrics(LABELS, [0] * 5)
    assert metrics["correct_acc"] == 0.0
    assert metrics["error_acc"] == pytest.approx(100 / 3)
    assert metrics["f1"] == 0.0


def test_mixed_predictions_by_hand() -> None:
    # erroneous: 0 right, 2 wrong (predicted 1: too early), 1 right -> 2/3; correct: 1 of 2 -> 1/2
    metrics = processbench_metrics(LABELS, [0, 1, 1, -1, 3])
    assert metrics["error_acc"] == pytest.approx(200 / 3)
    assert metrics["correct_acc"] == pytest.approx(50.0)
    assert metrics["f1"] == pytest.approx(2 * (200 / 3) * 50 / (200 / 3 + 50))  # 57.142857...
    assert metrics["f1"] == pytest.approx(400 / 7)


def test_a_late_prediction_is_wrong_too_and_empty_classes_are_nan() -> None:
    assert processbench_metrics([1], [2])["error_acc"] == 0.0
    only_correct = processbench_metrics([-1, -1], [-1, 0])
    assert (
        only_correct["correct_acc"] == 50.0 and math.isnan(only_correct["error_acc"]) and math.isnan(only_correct["f1"])
    )


def test_earliest_error_is_the_first_step_below_the_threshold() -> None:
    assert earliest_error([0.9, 0.4, 0.2], 0.5) == 1
    assert earliest_error([0.9, 0.6], 0.5) == -1
    assert earliest_error([0.5, 0.49], 0.5) == 1  # exactly the threshold passes
    assert earliest_error([0.9, 0.6], 0.7) == 1


def test_summary_averages_f1_over_splits() -> None:
    samples = pd.DataFrame(
        {"split": ["math"] * 5 + ["gsm8k"] * 2, "label": LABELS + [1, -1], "prediction": [0, 1, 1, -1, 3, 1, -1]}
    )
    table = summary_table(samples, "p", 0.5)
    assert table["split"].tolist() == ["gsm8k", "math", "average"]
    assert table.set_index("split").at["gsm8k", "f1"] == 100.0
    assert table.set_index("split").at["average", "f1"] == pytest.approx((100 + 400 / 7) / 2)


def test_shipped_subset_is_balanced_and_valid() -> None:
    samples = load_processbench()
    assert len(samples) == 200
    counts = samples.groupby(["split", samples["label"] >= 0]).size()
    assert set(counts) == {25} and set(samples["split"]) == set(SPLITS)
    for steps in samples["steps"]:
        assert len(split_steps(as_completion(steps))) == len(steps)
    assert load_processbench(limit=3, splits=["math"])["split"].tolist() == ["math"] * 3


def test_blank_lines_inside_a_step_keep_the_step_count() -> None:
    steps = ["First.\n\nStill first.", "  ", "Third\n \n"]
    assert split_steps(as_completion(steps)) == ["First.\nStill first.", "…", "Third"]


def test_bad_data_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "math.jsonl"
    bad.write_text(json.dumps({"split": "math", "id": "m-1", "problem": "p", "steps": ["a"], "label": 3}) + "\n")
    with pytest.raises(DatasetError, match="m-1"):
        load_processbench(str(bad))
    with pytest.raises(DatasetError, match="not 'builtin'"):
        load_processbench("nonexistent-file.jsonl")


def test_tiny_prm_end_to_end(tiny_model_path: Path, tmp_path: Path) -> None:
    settings = {"name": "tiny", "type": "rlhflow", "path": str(tiny_model_path), "device": "cpu", "batch_size": 4}
    out = tmp_path / "pb"
    code = main(["processbench", "--prm", json.dumps(settings), "--out", str(out), "--limit", "3"])
    assert code == 0
    table = pd.read_csv(out / "tiny.csv")
    assert table["split"].tolist() == [*SPLITS, "average"]
    samples = pd.read_parquet(out / "tiny.samples.parquet")
    assert len(samples) == 12
    for split, part in samples.groupby("split"):
        want = processbench_metrics(part["label"].tolist(), part["prediction"].tolist())
        assert table.set_index("split").at[split, "f1"] == pytest.approx(want["f1"], abs=0.01, nan_ok=True)
    assert (out / "processbench.png").stat().st_size > 1000
    assert (
        main(
            [
                "processbench",
                "--tables",
                str(out / "tiny.csv"),
                str(out / "tiny.csv"),
                "--plot",
                str(tmp_path / "again.png"),
            ]
        )
        == 0
    )


def test_one_prm_call_per_split(tiny_model_path: Path) -> None:
    prm = load_prm(PRMSettings(name="tiny", type="rlhflow", path=str(tiny_model_path), device="cpu", batch_size=8))
    calls = []
    score = prm.score
    prm.score = lambda problems, completions: calls.append(len(problems)) or score(problems, completions)
    samples = load_processbench(limit=2, splits=["gsm8k", "math"])
    predicted = predict(prm, samples, 0.5)
    assert calls == [2, 2]
    assert [len(s) for s in predicted["scores"]] == [len(s) for s in samples["steps"]]
