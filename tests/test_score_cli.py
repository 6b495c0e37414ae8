"""`sal score` end to end on the tiny random model: a completions shard in, a scores parquet out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sal_core.cli import main
from sal_core.prm import load_prm, split_steps
from sal_core.settings.jobs import PRMSettings
from sal_core.tables import read_metadata, read_table, write_table_atomic

ROWS = [
    {
        "problem_id": "p0",
        "problem": "What is 2+2?",
        "answer": "4",
        "level": "1",
        "completions": ["Add.\n\n2+2=4.\n\n$\\boxed{4}$", "It is $\\boxed{5}$.", ""],
        "completion_tokens": [9, 6, 0],
        "temperatures": [0.8, 0.8, 0.8],
        "groups": [0, 1, 2],
        "finish_reasons": ["stop", "stop", "length"],
    },
    {
        "problem_id": "p1",
        "problem": "What is 3*3?",
        "answer": "9",
        "level": None,
        "completions": ["3*3=9\n\nSo $\\boxed{9}$", "Nine.\n\n\n\nDone."],
        "completion_tokens": [10, 4],
        "temperatures": [0.8, 0.8],
        "groups": [0, 1],
        "finish_reasons": ["stop", "eos"],
    },
]


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    return write_table_atomic(ROWS, tmp_path / "completions.parquet")


def _prm_json(path: Path, **extra) -> str:
    return json.dumps({"name": "judge", "type": "rlhflow", "path": str(path), "device": "cpu", **extra})


def test_sal_score_writes_one_score_per_step(tiny_model_path: Path, shard: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores" / "judge.parquet"
    cmd = [
        sys.executable,
        "-m",
        "sal_core.cli",
        "score",
        "--completions",
        str(shard),
        "--prm",
        _prm_json(tiny_model_path, batch_size=2),
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = read_table(out)
    assert list(table.columns) == ["problem_id", "scores", "prm_tokens", "completion_prm_tokens"]
    assert list(table["problem_id"]) == ["p0", "p1"]
    prm = load_prm(PRMSettings.from_dict(json.loads(_prm_json(tiny_model_path))))
    for row, scores, read in zip(ROWS, table["scores"], table["prm_tokens"], strict=True):
        assert [len(s) for s in scores] == [len(split_steps(c)) for c in row["completions"]]
        assert all(0.0 <= x <= 1.0 for s in scores for x in s)
        # the tokens of every scored input (an empty completion has no step: nothing read)
        steps = [split_steps(c) for c in row["completions"]]
        per_completion = [len(prm.encode(row["problem"], s).input_ids) if s else 0 for s in steps]
        assert read == sum(per_completion) > 0
    assert [list(r) for r in table["completion_prm_tokens"]] == [
        [len(prm.encode(row["problem"], split_steps(c)).input_ids) if split_steps(c) else 0 for c in row["completions"]]
        for row in ROWS
    ]
    assert read_metadata(out)["prm"] == "judge"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no temporary file left behind"


def test_bad_settings_stop_before_loading(shard: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scores.parquet"
    absent = tmp_path / "not-a-model"
    assert (
        main(["score", "--completions", str(shard), "--prm", _prm_json(absent, batch_size=0), "--out", str(out)]) == 2
    )
    assert "prm.batch_size" in capsys.readouterr().err
    assert main(["score", "--completions", str(shard), "--prm", "{not json", "--out", str(out)]) == 2
    assert "prm: not valid JSON" in capsys.readouterr().err
    assert main(["score", "--completions", str(shard), "--prm", _prm_json(absent), "--out", str(out)]) == 2
    assert "not-a-model" in capsys.readouterr().err
    assert not out.exists()


def test_shard_without_completions_column_is_named(tmp_path: Path, capsys) -> None:
    bad = write_table_atomic([{"problem_id": "p0", "problem": "x"}], tmp_path / "bad.parquet")
    out = tmp_path / "s.parquet"
    assert main(["score", "--completions", str(bad), "--prm", _prm_json(tmp_path), "--out", str(out)]) == 2
    assert "missing column(s) completions" in capsys.readouterr().err
