"""All the compute a run spent, charged at each evaluated n: generated tokens (pruned beams, dropped
DVTS candidates and lookahead included) plus every token a PRM read, per method and protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sal_core.evaluation.aggregate import accuracy_table, compute_optimal
from sal_core.evaluation.compute import Spend
from sal_core.evaluation.evaluate import EvalOptions
from sal_core.evaluation.run import evaluate_file
from sal_core.tables import write_table_atomic


def boxed(answer: str) -> str:
    return "Work.\n\nTherefore, the final answer is: $\\boxed{" + answer + "}$."


def bon_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem_id": ["a"],
            "problem": ["1+1?"],
            "answer": ["2"],
            "completions": [[boxed("2"), boxed("3"), boxed("2"), boxed("4")]],
            "completion_tokens": [[10, 20, 30, 40]],
            "scores": [[[0.5], [0.4], [0.6], [0.1]]],
            "generated_tokens": [100],
            "prm_tokens": [0],
            "score_prm_tokens": [400],
            "score_completion_prm_tokens": [[100, 100, 100, 100]],
        }
    )


def dvts_frame() -> pd.DataFrame:
    """Three subtrees of beam_width 2: subtree 1 returned nothing, but its tokens were still spent."""
    return pd.DataFrame(
        {
            "completions": [["x", "y", "z"]],
            "completion_tokens": [[5, 6, 7]],
            "groups": [[0, 0, 2]],
            "generated_tokens": [90],
            "prm_tokens": [300],
            "subtree_tokens": [[30, 40, 20]],
            "subtree_prm_tokens": [[100, 120, 80]],
            "score_prm_tokens": [60],
            "score_completion_prm_tokens": [[20, 20, 20]],
        }
    )


def test_best_of_n_is_charged_for_the_completions_used():
    spend = Spend.read(bon_frame())
    generated, prm = spend.at("best_of_n", 2, 1, first_n=False)
    assert generated[0] == 50.0 and prm[0] == 200.0  # 2 x the means (25 generated, 100 read)
    generated, prm = spend.at("best_of_n", 2, 1, first_n=True)
    assert generated[0] == 30.0 and prm[0] == 200.0  # the first two


def test_dvts_is_charged_for_whole_subtrees_even_those_that_returned_nothing():
    spend = Spend.read(dvts_frame())
    generated, prm = spend.at("dvts", 4, 2, first_n=False)  # 2 of 3 subtrees, in expectation
    assert generated[0] == pytest.approx(2 / 3 * 90) and prm[0] == pytest.approx(2 / 3 * 300 + 2 / 3 * 60)
    generated, prm = spend.at("dvts", 4, 2, first_n=True)  # subtrees 0 and 1
    assert generated[0] == 70.0 and prm[0] == 220.0 + 40.0  # scoring read subtree 0's two completions
    generated, prm = spend.at("dvts", 6, 2, first_n=False)
    assert generated[0] == pytest.approx(90.0) and prm[0] == pytest.approx(360.0)


def test_beam_search_is_charged_for_the_whole_run():
    frame = dvts_frame().drop(columns=["subtree_tokens", "subtree_prm_tokens"])
    generated, prm = Spend.read(frame).at("beam_search", 3, 2, first_n=False)
    assert generated[0] == 90.0 and prm[0] == 360.0


def test_files_without_counts_give_nan_not_zero():
    frame = bon_frame()[["completions", "completion_tokens"]]
    generated, prm = Spend.read(frame).at("best_of_n", 2, 1, first_n=False)
    assert generated[0] == 50.0 and np.isnan(prm[0])


@pytest.mark.parametrize("protocol", ["default", "sal"])
def test_evaluate_writes_the_spend_and_the_compute_optimal_table_ranks_by_it(tmp_path, protocol):
    path = tmp_path / "merged.parquet"
    keys = {"dataset": "d", "model": "m", "approach": "bon", "method": "best_of_n", "sampling": "s", "prm": "p"}
    write_table_atomic(bon_frame(), path, metadata={**keys, "seed": "0", "n": "4"})
    options = EvalOptions(protocol=protocol, num_subsamples=8, bootstrap=50, workers=1, progress=False)
    rows = evaluate_file(path, {}, options).set_index(["n", "vote", "level"])
    at4 = rows.loc[(4, "majority", "all")]
    assert (at4["generated_tokens"], at4["prm_tokens"], at4["compute_tokens"]) == (100.0, 400.0, 500.0)
    assert rows.loc[(1, "majority", "all"), "compute_tokens"] == (125.0 if protocol == "default" else 110.0)
    table = accuracy_table(rows.reset_index().assign(seed="0"))
    optimal = compute_optimal(table)
    by_tokens = optimal[optimal["budget_type"] == "tokens"]
    assert set(by_tokens["budget_tokens"]) == {"compute_tokens"}
    assert (by_tokens["compute_tokens"] <= by_tokens["budget"]).all()  # every pick fits its budget
    assert by_tokens["budget"].max() >= 500.0  # the budgets reach the whole run's spend
