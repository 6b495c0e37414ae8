"""What a particle filtering run stores and how it is evaluated (issue 20): every final particle with its
weight, the selected one and the ESS per step in the shard; votes over all particles at the run's own n
only, the search's own choice as the `selected` vote, the whole run's compute charged, under both
protocols; the plots and the compute-optimal table take the rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sal_core.evaluation.aggregate import accuracy_table, compute_optimal
from sal_core.evaluation.evaluate import EvalOptions
from sal_core.evaluation.plot import accuracy_figure, family
from sal_core.evaluation.run import evaluate_file
from sal_core.pipeline.generate import completion_rows
from sal_core.search.results import SearchResult
from sal_core.tables import read_table, write_table_atomic

KEYS = {"dataset": "d", "model": "m", "approach": "pf-n8.p", "method": "particle_filtering", "sampling": "s"}


def boxed(answer: str) -> str:
    return "## Step 1: Work.\n\nTherefore, the final answer is: $\\boxed{" + answer + "}$."


def particle_frame() -> pd.DataFrame:
    """Two problems of a run at n = 8 in 2 sweeps: 4 final particles each, duplicates included.

    a (gold 2): the crowd and the PRM say 3, the search selected the lone 2;
    b (gold 5): the crowd says 5, the PRM's top particle and the search's choice say 4.
    """
    return pd.DataFrame(
        {
            "problem_id": ["a", "b"],
            "problem": ["1+1?", "2+3?"],
            "answer": ["2", "5"],
            "completions": [[boxed(x) for x in "3323"], [boxed(x) for x in "5545"]],
            "completion_tokens": [[10, 10, 12, 10], [8, 8, 9, 8]],
            "scores": [[[0.9], [0.9], [0.2], [0.9]], [[0.8], [0.8], [0.9], [0.8]]],
            "weights": [[0.3, 0.3, 0.1, 0.3], [0.2, 0.2, 0.4, 0.2]],
            "selected": [2, 2],
            "ess": [[[4.0, 3.1], [4.0, 2.5]], [[4.0, 3.9], [4.0, 3.0]]],
            "generated_tokens": [300, 200],
            "prm_tokens": [900, 700],
            "score_prm_tokens": [0, 0],
        }
    )


@pytest.mark.parametrize("protocol", ["default", "sal"])
def test_votes_over_every_particle_at_the_runs_own_n_and_the_selected_particle(tmp_path: Path, protocol: str):
    path = tmp_path / "merged.parquet"
    write_table_atomic(particle_frame(), path, metadata={**KEYS, "seed": "0", "prm": "p", "n": "8"})
    options = EvalOptions(protocol=protocol, num_subsamples=8, bootstrap=50, workers=1, progress=False)
    rows = evaluate_file(path, {}, options)
    assert set(rows["n"]) == {8}  # no subsample of a particle run stands for a smaller n
    acc = rows[rows["level"] == "all"].set_index("vote")["accuracy"].to_dict()
    assert acc == {"majority": 0.5, "naive": 0.0, "weighted": 0.5, "selected": 0.5, "pass@k": 1.0}
    spent = rows[rows["level"] == "all"].iloc[0]
    assert (spent["generated_tokens"], spent["prm_tokens"], spent["compute_tokens"]) == (250.0, 800.0, 1050.0)


def test_particle_rows_reach_the_tables_and_the_plots(tmp_path: Path) -> None:
    """A particle run's rows (with their `selected` column) beside a Best-of-N run's: the accuracy
    table, the compute-optimal table and the accuracy-vs-n figure all take them."""
    path = tmp_path / "merged.parquet"
    write_table_atomic(particle_frame(), path, metadata={**KEYS, "seed": "0", "prm": "p", "n": "8"})
    options = EvalOptions(num_subsamples=8, bootstrap=50, workers=1, progress=False)
    particles = evaluate_file(path, {}, options)
    bon = particle_frame().drop(columns=["weights", "selected", "ess"])
    write_table_atomic(bon, tmp_path / "bon.parquet", metadata={**KEYS, "approach": "bon", "method": "best_of_n"})
    rows = pd.concat([particles, evaluate_file(tmp_path / "bon.parquet", {}, options)])
    table = accuracy_table(rows.assign(seed="0"))
    assert set(table.loc[table["approach"] == "pf-n8.p", "vote"]) == {"majority", "naive", "weighted", "selected"} | {
        "pass@k"
    }
    optimal = compute_optimal(table)
    at8 = optimal[(optimal["budget_type"] == "n") & (optimal["budget"] == 8) & (optimal["level"] == "all")]
    assert len(at8) == 1 and at8["accuracy"].iloc[0] == 0.5
    fig = accuracy_figure(table, "m")
    titles = [ax.get_title() for ax in fig.axes]
    assert "selected" in titles and "majority" in titles
    assert family("pf-n8.p") == family("pf-n2.p")  # particle runs of every n are one line, as beam search's


def test_the_shard_keeps_every_particle_its_weight_the_choice_and_the_ess(tmp_path: Path) -> None:
    result = SearchResult(
        completions=["a", "a", "b"],
        completion_tokens=[3, 3, 4],
        temperatures=[0.8] * 3,
        groups=[0, 1, 2],
        finish_reasons=["stop"] * 3,
        search_scores=[[0.5], [0.5], [0.7]],
        generated_tokens=30,
        prm_tokens=40,
        weights=[0.25, 0.25, 0.5],
        selected=2,
        ess=[[3.0, 2.2, 1.9]],
    )
    problems = pd.DataFrame({"problem_id": ["p"], "problem": ["q"], "answer": ["b"], "level": [None]})
    rows = completion_rows(problems, [result], with_scores=True)
    write_table_atomic(pd.DataFrame(rows), tmp_path / "shard.parquet")
    back = read_table(tmp_path / "shard.parquet").iloc[0]
    assert list(back["completions"]) == ["a", "a", "b"]  # duplicates stay
    assert list(back["weights"]) == [0.25, 0.25, 0.5] and back["selected"] == 2
    assert [list(sweep) for sweep in back["ess"]] == [[3.0, 2.2, 1.9]]


def test_a_selected_index_past_the_particles_is_refused(tmp_path: Path) -> None:
    frame = particle_frame()
    frame.loc[0, "selected"] = 4
    path = tmp_path / "merged.parquet"
    write_table_atomic(frame, path, metadata={**KEYS, "seed": "0", "prm": "p", "n": "8"})
    with pytest.raises(Exception, match="problem 'a' selects completion 4 of 4"):
        evaluate_file(path, {}, EvalOptions(workers=1, progress=False, bootstrap=10))
