"""`sal generate` end to end on the tiny model: the shard's rows in dataset order with the
completions schema and run metadata, and bad inputs rejected before any model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sal_core.cli import main
from sal_core.tables import read_metadata, read_table, write_table_atomic

PROBLEMS = pd.DataFrame(
    {
        "problem_id": ["p0", "p1", "p2", "p3"],
        "problem": ["What is $1+1$?", "What is $2 \\cdot 3$?", "What is $9 - 4$?", "What is $10 / 2$?"],
        "answer": ["2", "6", "5", "5"],
        "level": ["1", None, "2", "1"],
    }
)
COLUMNS = [
    "problem_id",
    "problem",
    "answer",
    "level",
    "completions",
    "completion_tokens",
    "temperatures",
    "groups",
    "finish_reasons",
    "generated_tokens",
    "prm_tokens",
]


@pytest.fixture
def problems_file(tmp_path: Path) -> Path:
    return write_table_atomic(PROBLEMS, tmp_path / "problems.parquet")


def job_json(model_path: Path | str, method: str, **search) -> str:
    job = {
        "model": {"name": "tiny", "path": str(model_path), "batch_size": 32},
        "search": {"method": method, **search},
    }
    if method != "best_of_n":
        job["prm"] = {"name": "judge", "type": "rlhflow", "path": str(model_path)}
    return json.dumps(job)


def generate(problems: Path, start: int, end: int, job: str, out: Path) -> int:
    return main(
        [
            "generate",
            "--problems",
            str(problems),
            "--start",
            str(start),
            "--end",
            str(end),
            "--job",
            job,
            "--out",
            str(out),
        ]
    )


def test_best_of_n_shard(tiny_model_path, problems_file, tmp_path):
    out = tmp_path / "shards" / "1-4" / "completions.parquet"
    job = job_json(tiny_model_path, "best_of_n", n=3, max_tokens=6, temperatures=[0.5, 1.0], seed=5)
    assert generate(problems_file, 1, 4, job, out) == 0
    table = read_table(out)
    assert list(table.columns) == COLUMNS
    assert table["problem_id"].tolist() == ["p1", "p2", "p3"]
    assert table["problem"].tolist() == PROBLEMS["problem"].tolist()[1:4]
    assert pq.read_table(out, columns=["level"]).column("level").to_pylist() == [None, "2", "1"]
    for row in table.itertuples():
        assert len(row.completions) == len(row.completion_tokens) == len(row.finish_reasons) == 3
        assert list(row.temperatures) == [0.5, 1.0, 0.5]  # cycled: no ratios given
        assert list(row.groups) == [0, 1, 2]
        # Best-of-N: every generated token is in a returned completion; no PRM in the search
        assert row.generated_tokens == sum(row.completion_tokens) and row.prm_tokens == 0
    assert read_metadata(out) == {"method": "best_of_n", "n": "3", "beam_width": "4", "seed": "5"}
    assert not list(out.parent.glob(".*.tmp"))


def test_beam_search_shard_has_search_scores(tiny_model_path, problems_file, tmp_path):
    out = tmp_path / "completions.parquet"
    job = job_json(tiny_model_path, "beam_search", n=2, beam_width=2, num_iterations=2, max_tokens=5)
    assert generate(problems_file, 0, 2, job, out) == 0
    table = read_table(out)
    assert list(table.columns) == [*COLUMNS, "search_scores"]
    assert table["problem_id"].tolist() == ["p0", "p1"]
    for row in table.itertuples():
        assert len(row.completions) == len(row.search_scores) == 2
        assert all(len(scores) >= 1 for scores in row.search_scores)
        assert row.generated_tokens >= max(row.completion_tokens) and row.prm_tokens > 0
    assert read_metadata(out)["method"] == "beam_search"


def test_dvts_shard_records_compute_per_subtree(tiny_model_path, problems_file, tmp_path):
    out = tmp_path / "completions.parquet"
    job = job_json(tiny_model_path, "dvts", n=4, beam_width=2, num_iterations=2, max_tokens=5)
    assert generate(problems_file, 0, 2, job, out) == 0
    table = read_table(out)
    assert list(table.columns) == [*COLUMNS, "search_scores", "subtree_tokens", "subtree_prm_tokens"]
    for row in table.itertuples():
        assert len(row.subtree_tokens) == len(row.subtree_prm_tokens) == 2
        assert sum(row.subtree_tokens) == row.generated_tokens > 0
        assert sum(row.subtree_prm_tokens) == row.prm_tokens > 0


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [(2, 9, "shard 2-9 is outside its 4 problems"), (3, 3, "shard 3-3"), (-1, 2, "shard -1-2")],
)
def test_bad_shard_range_fails_before_loading_the_model(problems_file, tmp_path, capsys, start, end, message):
    # the model path does not exist: a range error must be reported first, without loading anything
    job = job_json(tmp_path / "no-such-model", "best_of_n", n=2)
    assert generate(problems_file, start, end, job, tmp_path / "out.parquet") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ("{not json", "--job: not valid JSON"),
        (json.dumps({"search": {"method": "best_of_n", "n": 2}}), "missing the 'model'"),
        (json.dumps({"model": {"name": "m", "path": "/x"}, "search": {"method": "best_of_n", "n": 0}}), "search.n"),
        (
            json.dumps({"model": {"name": "m", "path": "/x"}, "search": {"method": "dvts", "n": 4, "beam_width": 2}}),
            "needs a PRM",
        ),
    ],
)
def test_bad_job_is_a_config_error(problems_file, tmp_path, capsys, job, message):
    assert generate(problems_file, 0, 2, job, tmp_path / "out.parquet") == 2
    assert message in capsys.readouterr().err


def test_missing_problems_file_is_reported(tmp_path, capsys):
    job = job_json(tmp_path / "m", "best_of_n", n=2)
    assert generate(tmp_path / "absent.parquet", 0, 1, job, tmp_path / "out.parquet") == 2
    assert "absent.parquet" in capsys.readouterr().err


def test_help_describes_the_step():
    result = subprocess.run(
        [sys.executable, "-m", "sal_core.cli", "generate", "--help"], capture_output=True, text=True, check=True
    )
    assert "--problems" in result.stdout and "GenerateJob" in result.stdout
