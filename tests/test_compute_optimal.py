"""Compute-optimal scaling by difficulty, where the answer is known: synthetic per-problem credit with
an injected fold assignment, each bin with a known best strategy and a trap (perfect on fold A, zero on
fold B); bins from known pass@1 values; the per-problem credit of a real evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sal_core.cli import main
from sal_core.errors import ConfigError
from sal_core.evaluation.credit import COLUMNS, read_credit
from sal_core.evaluation.difficulty import difficulty_bins
from sal_core.evaluation.evaluate import EvalOptions
from sal_core.evaluation.optimal import NOT_REACHED, OptimalSettings, analyse
from sal_core.evaluation.run import evaluate_file, write_credit
from sal_core.evaluation.selection import cross_validate, in_sample, random_folds
from sal_core.tables import write_table_atomic

GOOD = [1, 1, 1, 0, 1, 1, 1, 0]  # 0.75 on either half
TRAP = [1, 1, 1, 1, 0, 0, 0, 0]  # perfect on fold A (the first half), zero on fold B
FOLD_A = np.array([[True] * 4 + [False] * 4])


def test_cross_validation_scores_each_choice_on_the_other_fold() -> None:
    credit = np.array([GOOD, TRAP, [0] * 8], dtype=float)
    cv = cross_validate(credit, FOLD_A)
    # chosen on A: the trap (1.0 > 0.75), scored on B: 0; chosen on B: the good one, scored on A: 3/4
    assert cv.chosen.tolist() == [[1, 0]]
    assert cv.accuracy() == pytest.approx((0 * 4 + 3) / 8)
    assert in_sample(credit) == (0, pytest.approx(0.75))
    # choosing and scoring on the same fold would give (4 + 3) / 8: the trap's optimism
    assert cv.accuracy() != pytest.approx(7 / 8)


def test_random_folds_are_seeded_halves() -> None:
    first = random_folds(7, 5, np.random.default_rng(3))
    assert (first.sum(1) == 3).all()
    assert (first == random_folds(7, 5, np.random.default_rng(3))).all()
    assert len({row.tobytes() for row in first}) > 1


def test_bins_from_known_pass_at_1_come_out_as_constructed() -> None:
    values = np.repeat([1.0, 0.75, 0.5, 0.25, 0.0], 4)
    assert difficulty_bins(values, 5).tolist() == np.repeat([1, 2, 3, 4, 5], 4).tolist()
    # a value equal to a threshold falls in the easier bin (search-and-learn's compute_level)
    assert difficulty_bins(np.array([0.0, 0.0, 0.0, 1.0]), 2).tolist() == [1, 1, 1, 1]
    assert difficulty_bins(np.array([0.1, 0.2, 0.3, 0.9]), 2).tolist() == [2, 2, 1, 1]


def credit_rows(approach, method, vote, seed, credits, pass1=None, n=4, prm="judge"):
    """Long credit rows of one strategy at one n, problems p00, p01, ..."""
    num = len(credits)
    correct = [round(p * 4) for p in (pass1 if pass1 is not None else [0.5] * num)]
    return pd.DataFrame(
        {
            "dataset": "d",
            "model": "m",
            "approach": approach,
            "method": method,
            "sampling": "t1",
            "seed": str(seed),
            "prm": prm,
            "aggregation": "last",
            "protocol": "default",
            "problem_id": [f"p{i:02d}" for i in range(num)],
            "n": n,
            "vote": vote,
            "credit": np.asarray(credits, dtype=float),
            "compute_tokens": 100.0 * n,
            "mean_tokens": 50.0 * n,
            "num_samples": 4,
            "num_correct": correct,
            "mean_score": np.asarray(pass1 if pass1 is not None else [0.5] * num, dtype=float),
        }
    )[list(COLUMNS)]


def synthetic_grid() -> pd.DataFrame:
    """16 problems, two bins of 8 by the Best-of-N run's pass@1 at seed 0 (1.0: easy, 0.25: hard);
    scored at seed 1. Easy bin: best bon/majority, trap beam/weighted; hard bin: best beam/majority,
    trap bon/weighted."""
    pass1 = [1.0] * 8 + [0.25] * 8
    zeros = [0] * 8
    frames = [credit_rows("bon", "best_of_n", vote, 0, [0] * 16, pass1) for vote in ("majority", "weighted")]
    frames += [
        credit_rows("bon", "best_of_n", "majority", 1, GOOD + zeros),
        credit_rows("bon", "best_of_n", "weighted", 1, zeros + TRAP),
        credit_rows("beam", "beam_search", "majority", 1, zeros + GOOD),
        credit_rows("beam", "beam_search", "weighted", 1, TRAP + zeros),
        credit_rows("bon", "best_of_n", "majority", 1, [1] * 16, n=16),  # Best-of-N reaches anything at n = 16
        credit_rows("bon", "best_of_n", "weighted", 1, [0] * 16, n=16),
    ]
    return pd.concat(frames, ignore_index=True)


def injected(level: int, size: int, settings: OptimalSettings) -> np.ndarray:
    return np.array([[True] * (size // 2) + [False] * (size - size // 2)])


def test_each_bin_gets_its_cross_validated_accuracy_and_its_in_sample_choice_beside_it() -> None:
    table, curves, ref = analyse(synthetic_grid(), OptimalSettings(bins=2, repeats=1), injected)
    assert (ref.approach, ref.difficulty_seed, ref.scoring_seeds, ref.held_out) == ("bon", "0", ("1",), True)
    at4 = table[(table["difficulty"] == "oracle") & (table["budget_type"] == "n") & (table["budget"] == 4)]
    rows = at4.set_index("bin")
    assert rows.loc["1", "num_problems"] == 8 and rows.loc["2", "num_problems"] == 8
    for level in ("1", "2"):
        assert rows.loc[level, "cv_accuracy"] == pytest.approx(3 / 8)  # by hand: (0 x 4 + 3) / 8
        assert rows.loc[level, "in_sample_accuracy"] == pytest.approx(0.75)
    assert rows.loc["1", "in_sample_strategy"] == "bon / t1 / majority @ n=4"
    assert rows.loc["2", "in_sample_strategy"] == "beam / t1 / majority @ n=4"
    assert rows.loc["all", "cv_accuracy"] == pytest.approx(3 / 8)
    assert rows.loc["all", "in_sample_accuracy"] == pytest.approx(0.75)
    # Best-of-N at the same budget, on the same problems, and where it reaches the optimum (no interpolation)
    assert rows.loc["1", "bon_majority"] == pytest.approx(0.75)
    assert rows.loc["all", "bon_majority"] == pytest.approx(0.375)
    assert rows.loc["all", "majority_reaches_at"] == 4 and rows.loc["all", "majority_less_compute"] == 1.0
    assert rows.loc["2", "majority_reaches_at"] == 16 and rows.loc["2", "majority_less_compute"] == 4.0
    assert rows.loc["1", "weighted_less_compute"] == NOT_REACHED  # 0 at n = 4 and at n = 16 on the easy bin
    assert rows.loc["2", "weighted_less_compute"] == 1.0  # the hard bin's trap is Best-of-N weighted: 0.5 at n = 4
    assert set(curves["label"]) >= {"bon / t1 / majority", "beam / t1 / weighted"}


def test_the_embedded_default_has_too_few_problems_for_bins() -> None:
    small = synthetic_grid()
    small = small[small["problem_id"] < "p04"]
    with pytest.raises(ConfigError, match=r"evaluation\.optimal\.bins: 4 problems are too few for 5"):
        analyse(small, OptimalSettings())


def test_bad_difficulty_settings_name_themselves() -> None:
    with pytest.raises(ConfigError, match="evaluation.optimal.predicted_prm: 'other' scored nothing"):
        analyse(synthetic_grid(), OptimalSettings(bins=2, predicted_prm="other"))
    grid = synthetic_grid()
    with pytest.raises(ConfigError, match="evaluation.optimal.difficulty_run"):
        analyse(grid[grid["method"] != "best_of_n"], OptimalSettings(bins=2))


def test_sal_optimal_writes_the_table_and_figure_or_says_why_not(tmp_path: Path, capsys) -> None:
    path = tmp_path / "credit.parquet"
    write_table_atomic(synthetic_grid(), path)
    table, plot = tmp_path / "m.csv", tmp_path / "m.png"
    argv = ["optimal", "--credit", str(path), "--model", "m", "--out", str(table), "--plot", str(plot)]
    assert main([*argv, "--bins", "2", "--repeats", "3"]) in (0, None)
    written = pd.read_csv(table)
    assert set(written["difficulty"]) == {"oracle", "predicted"} and plot.stat().st_size > 0
    assert main(argv) in (0, None)  # 16 problems, 5 bins: one line, the header and the curves
    assert "too few for 5 difficulty bins" in capsys.readouterr().err
    assert pd.read_csv(table).empty and plot.stat().st_size > 0


def boxed(answer: str) -> str:
    return "Work.\n\nSo the answer is $\\boxed{" + answer + "}$."


def test_credit_file_holds_what_the_metrics_average(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "problem_id": ["a", "b", "c"],
            "problem": ["?"] * 3,
            "answer": ["2", "3", "5"],
            "level": ["1", "2", "2"],
            "completions": [
                [boxed("2"), boxed("3"), boxed("2"), boxed("4")],
                [boxed("1"), boxed("3"), boxed("1"), boxed("3")],
                [boxed("5"), boxed("6"), boxed("7"), boxed("8")],
            ],
            "completion_tokens": [[10, 20, 30, 40]] * 3,
            "scores": [[[0.5], [0.4], [0.6], [0.1]], [[0.9], [0.2], [0.8], [0.3]], [[0.1], [0.9], [0.2], [0.3]]],
        }
    )
    merged = tmp_path / "merged.parquet"
    write_table_atomic(frame, merged)
    options = EvalOptions(workers=1, progress=False, bootstrap=50, num_subsamples=8)
    metrics = evaluate_file(merged, {}, options)
    write_credit(merged, tmp_path / "credit.parquet", {}, options)
    credit = read_credit([tmp_path / "credit.parquet"])
    means = credit.groupby(["n", "vote"])["credit"].mean()
    overall = metrics[metrics["level"] == "all"].set_index(["n", "vote"])["accuracy"]
    pd.testing.assert_series_equal(means.sort_index(), overall.sort_index(), check_names=False)
    first = credit.drop_duplicates("problem_id").set_index("problem_id")
    assert first["num_correct"].tolist() == [2, 2, 1] and first["num_samples"].tolist() == [4, 4, 4]
    assert first.loc["a", "mean_score"] == pytest.approx(0.4)


def test_figure_names_each_best_of_n_once_with_two_scoring_prms(tmp_path: Path, monkeypatch) -> None:
    """particles_cpu.yaml scores every run by two PRMs: the figure picks out the Best-of-N curves the
    table compares with (its difficulty PRM's), once each, the weighted one naming its PRM."""
    import matplotlib.pyplot as plt

    from sal_core.evaluation import optimal_plot

    grid = synthetic_grid()
    grid = pd.concat([grid, grid.assign(prm="verifier")], ignore_index=True)
    table, curves, _ = analyse(grid, OptimalSettings(bins=2, repeats=1, predicted_prm="verifier"))
    legends = []
    monkeypatch.setattr(plt, "close", lambda fig: legends.append([t.get_text() for t in fig.legends[0].get_texts()]))
    optimal_plot.optimal_figure(table, curves, "m", tmp_path / "m.png", None)
    (labels,) = legends
    best_of_n = [label for label in labels if label.startswith("Best-of-N")]
    assert best_of_n == ["Best-of-N majority (t1)", "Best-of-N weighted (t1)\nby verifier\n(the paper's baseline)"]
