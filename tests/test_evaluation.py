"""sal evaluate / aggregate end to end on small files, and every metric on a hand-checked example."""

import json

import numpy as np
import pandas as pd
import pytest

from sal_core.cli import main
from sal_core.evaluation.evaluate import EvalOptions, Graded, compute_metrics
from sal_core.evaluation.levels import normalise_level
from sal_core.tables import read_metadata, write_table_atomic

KEYS = {
    "dataset": "toy",
    "model": "m",
    "approach": "bon",
    "method": "best_of_n",
    "sampling": "hot",
    "seed": "0",
    "prm": "p",
}


def boxed(answer):
    return "Some work.\n\nTherefore, the final answer is: $\\boxed{" + answer + "}$." if answer else "I give up."


def test_every_metric_on_a_hand_checked_example():
    graded = Graded(
        classes=np.array([[0, 1], [0, 0]]),
        scores=np.array([[0.2, 0.8], [0.5, 0.1]]),
        groups=np.array([[0, 1], [0, 1]]),
        valid=np.ones((2, 2), bool),
        mean_tokens=np.array([10.0, 30.0]),
        levels=["1", "2"],
        timeouts=np.array([1, 0]),
    )
    rows = compute_metrics(graded, KEYS, EvalOptions(num_subsamples=3000, bootstrap=500))
    at = rows.set_index(["n", "vote", "level"])
    assert at.loc[(2, "majority", "all"), "accuracy"] == 0.75  # a tie (1/2) and a sure win
    assert at.loc[(2, "naive", "all"), "accuracy"] == 0.5
    assert at.loc[(2, "weighted", "all"), "accuracy"] == 0.5
    assert at.loc[(2, "pass@k", "all"), "accuracy"] == 1.0
    assert at.loc[(1, "pass@k", "1"), "accuracy"] == 0.5
    assert at.loc[(1, "majority", "all"), "accuracy"] == pytest.approx(0.75, abs=0.02)
    assert at.loc[(2, "majority", "1"), "accuracy"] == 0.5
    assert at.loc[(2, "majority", "2"), "accuracy"] == 1.0
    assert at.loc[(2, "naive", "all"), "mean_tokens"] == 40.0  # 2 x mean(10, 30)
    assert at.loc[(1, "naive", "2"), "mean_tokens"] == 30.0
    assert at.loc[(2, "naive", "all"), "timeouts"] == 1 and at.loc[(2, "naive", "2"), "timeouts"] == 0
    ci = at.loc[(2, "majority", "all")]
    assert ci["ci_low"] <= 0.75 <= ci["ci_high"]
    assert set(rows["level"]) == {"all", "1", "2"}
    assert (rows["dataset"] == "toy").all() and (rows["sampling"] == "hot").all()


def test_levels_are_normalised():
    assert normalise_level("Level 3") == "3" and normalise_level(3) == "3" and normalise_level(None) is None


def toy_rows():
    # problem a: gold 1/2, answers 0.5 (x2, low score), 3 (x1, high score), none (x1)
    # problem b: gold 7, answers 7 (x3), 8 (x1)
    return [
        {
            "problem_id": "a",
            "problem": "?",
            "answer": "\\frac{1}{2}",
            "level": "Level 1",
            "completions": [boxed("0.5"), boxed("\\dfrac12"), boxed("3"), boxed(None)],
            "scores": [[0.9, 0.2], [0.3], [0.1, 0.95], [0.99]],
            "completion_tokens": [10, 20, 30, 40],
        },
        {
            "problem_id": "b",
            "problem": "?",
            "answer": "7",
            "level": "Level 2",
            "completions": [boxed("7"), boxed("7"), boxed("8"), boxed("7.0")],
            "scores": [[0.5], [0.5], [0.6], [0.1]],
            "completion_tokens": [5, 5, 5, 5],
        },
    ]


def test_cli_on_jsonl_like_synthetic_results(tmp_path):
    path = tmp_path / "merged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_rows()))
    out = tmp_path / "metrics.parquet"
    code = main(
        [
            "evaluate",
            "--merged",
            str(path),
            "--out",
            str(out),
            "--dataset",
            "toy",
            "--model",
            "m",
            "--workers",
            "1",
            "--num-subsamples",
            "16",
            "--no-progress",
        ]
    )
    assert code == 0
    rows = pd.read_parquet(out).set_index(["n", "vote", "level"])
    assert rows.loc[(4, "majority", "all"), "accuracy"] == 1.0
    assert rows.loc[(4, "naive", "all"), "accuracy"] == 0.0  # last-step 0.95 on "3", 0.6 on "8"
    assert rows.loc[(4, "weighted", "all"), "accuracy"] == 0.5  # 0.2+0.3 < 0.95; 0.5+0.5+0.1 > 0.6
    assert rows.loc[(4, "majority", "all"), "mean_tokens"] == pytest.approx(4 * (25 + 5) / 2)
    assert rows.loc[(4, "majority", "1"), "num_problems"] == 1
    assert set(rows.reset_index()["n"]) == {1, 2, 4}
    assert read_metadata(out)["model"] == "m"


def test_cli_on_parquet_with_run_metadata_and_min_aggregation(tmp_path):
    frame = pd.DataFrame(toy_rows())
    frame["groups"] = [[0, 0, 1, 1], [0, 0, 1, 1]]
    path = tmp_path / "merged.parquet"
    write_table_atomic(
        frame, path, metadata={**KEYS, "method": "dvts", "approach": "dvts.p", "n": "4", "beam_width": "2"}
    )
    out = tmp_path / "metrics.parquet"
    assert (
        main(
            [
                "evaluate",
                "--merged",
                str(path),
                "--out",
                str(out),
                "--aggregation",
                "min",
                "--workers",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = pd.read_parquet(out)
    assert set(rows["n"]) == {2, 4}  # DVTS with subtrees of 2: no n = 1
    assert (rows["approach"] == "dvts.p").all() and (rows["aggregation"] == "min").all()
    at = rows.set_index(["n", "vote", "level"])
    # min step score: a -> 0.3 on "\\dfrac12" (correct); b -> 0.6 on "8" (wrong)
    assert at.loc[(4, "naive", "all"), "accuracy"] == 0.5


def test_cli_names_a_bad_file(tmp_path, capsys):
    path = tmp_path / "merged.jsonl"
    path.write_text(json.dumps({"problem_id": "a", "answer": "1", "completions": ["x"]}) + "\n")
    assert main(["evaluate", "--merged", str(path), "--out", str(tmp_path / "m.parquet")]) == 2
    assert "scores" in capsys.readouterr().err


def test_aggregate_pools_seeds_and_picks_compute_optimal(tmp_path):
    paths = []
    base = pd.DataFrame(
        [
            {
                **KEYS,
                "aggregation": "last",
                "n": n,
                "vote": vote,
                "level": "all",
                "accuracy": acc,
                "ci_low": acc - 0.1,
                "ci_high": acc + 0.1,
                "mean_tokens": 100.0 * n,
                "timeouts": 1,
                "num_problems": 10,
            }
            for n, vote, acc in [(1, "majority", 0.4), (4, "majority", 0.6), (4, "weighted", 0.7), (4, "pass@k", 0.9)]
        ]
    )
    for seed, shift in (("0", 0.0), ("1", 0.1)):
        frame = base.assign(seed=seed, accuracy=base["accuracy"] + shift)
        paths.append(tmp_path / f"m{seed}.parquet")
        write_table_atomic(frame, paths[-1])
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in paths) + "\n")
    out, best = tmp_path / "accuracy.csv", tmp_path / "compute_optimal.csv"
    assert (
        main(
            [
                "aggregate",
                "--metrics-list",
                str(listing),
                "--out",
                str(out),
                "--compute-optimal",
                str(best),
                "--no-progress",
            ]
        )
        == 0
    )
    table = pd.read_csv(out).set_index(["n", "vote"])
    row = table.loc[(4, "weighted")]
    assert row["accuracy"] == pytest.approx(0.75) and row["num_seeds"] == 2 and row["timeouts"] == 2
    # each run's interval is +-0.1 (problem sampling, shared by the seeds) plus the seeds' spread
    run_se = 0.2 / (2 * 1.959964)
    half = 1.959964 * np.sqrt(run_se**2 + np.var([0.7, 0.8], ddof=1) / 2)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(0.75 - half), pytest.approx(0.75 + half))
    near_one = table.loc[(4, "pass@k")]  # 0.95 + half is past 1: clipped, accuracy cannot exceed 1
    assert near_one["ci_high"] == 1.0
    optimal = pd.read_csv(best)
    at_n4 = optimal[(optimal["budget_type"] == "n") & (optimal["budget"] == 4)].iloc[0]
    assert at_n4["vote"] == "weighted"  # pass@k is an oracle and never wins
    under_200 = optimal[(optimal["budget_type"] == "tokens") & (optimal["budget"] == 128)].iloc[0]
    assert under_200["n"] == 1
