"""Datasets: field mapping, GSM8K answers, validation errors that name the culprit, shards, snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sal_core.errors import ConfigError, DatasetError
from sal_core.pipeline.prepare_dataset import (
    builtin_datasets,
    load_problems,
    read_problems,
    shard_ranges,
    snapshot_problems,
)
from sal_core.settings.dataset import DatasetSettings


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def settings(**kwargs) -> DatasetSettings:
    return DatasetSettings.from_dict({"name": "d", "source": "local", **kwargs})


def test_builtin_set_loads_with_ids_levels_and_answers() -> None:
    assert "easy_math" in builtin_datasets()
    problems = load_problems(DatasetSettings.from_dict({"name": "e", "source": "builtin", "path": "easy_math"}))
    assert list(problems.columns) == ["problem_id", "problem", "answer", "level"]
    assert problems["problem_id"].is_unique and len(problems) >= 8
    assert problems.loc[0, "answer"] == "5" and problems.loc[0, "level"] == "1"


def test_local_jsonl_with_renamed_fields_and_limit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"q": f"Q{i}", "a": i, "lvl": 3} for i in range(5)])
    problems = load_problems(
        settings(path=str(path), fields={"problem": "q", "answer": "a", "id": None, "level": "lvl"}, limit=3)
    )
    assert problems.to_dict("list") == {
        "problem_id": ["0", "1", "2"],
        "problem": ["Q0", "Q1", "Q2"],
        "answer": ["0", "1", "2"],
        "level": ["3", "3", "3"],
    }


def test_gsm8k_answers_keep_only_the_final_number(tmp_path: Path) -> None:
    rows = [{"question": "How many?", "answer": "2 + 2 = <<2+2=4>>4 ... 1,234\n#### 1,234"}]
    path = write_jsonl(tmp_path / "g.jsonl", rows)
    problems = load_problems(
        settings(path=str(path), fields={"problem": "question", "id": None, "level": None}, answer_format="gsm8k")
    )
    assert problems.loc[0, "answer"] == "1234"
    assert problems.loc[0, "level"] is None


def test_gsm8k_answer_without_marker_names_the_row(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "g.jsonl", [{"problem": "p", "answer": "#### 1"}, {"problem": "p2", "answer": "2"}])
    with pytest.raises(DatasetError, match=r"row 1 answer has no final '#### answer'"):
        load_problems(settings(path=str(path), fields={"id": None}, answer_format="gsm8k"))


def test_missing_answer_field_names_the_field_and_the_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "p", "solution": "s"}])
    expected = r"no column 'answer' for dataset.fields.answer \(columns: problem, solution\)"
    with pytest.raises(DatasetError, match=expected):
        load_problems(settings(path=str(path)))


def test_empty_answer_and_duplicate_ids_name_the_row(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "q", "answer": " "}])
    with pytest.raises(DatasetError, match="row 1 has an empty 'answer'"):
        load_problems(settings(path=str(path), fields={"id": None}))
    dup = write_jsonl(tmp_path / "e.jsonl", [{"problem": "p", "answer": "1", "unique_id": "x"}] * 2)
    with pytest.raises(DatasetError, match="row 1 repeats problem id 'x'"):
        load_problems(settings(path=str(dup)))


def test_csv_and_parquet_files_load_alike(tmp_path: Path) -> None:
    frame = pd.DataFrame({"problem": ["a", "b"], "answer": ["1", "2"], "unique_id": ["u1", "u2"]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    from_csv = load_problems(settings(path=str(tmp_path / "d.csv")))
    from_parquet = load_problems(settings(path=str(tmp_path / "d.parquet")))
    pd.testing.assert_frame_equal(from_csv, from_parquet)


def test_bad_sources_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_problems(settings(path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(DatasetError, match="no built-in dataset 'nope'"):
        load_problems(DatasetSettings.from_dict({"name": "d", "source": "builtin", "path": "nope"}))
    with pytest.raises(ConfigError, match="dataset.shard_size"):
        settings(path="x.jsonl", shard_size=0)
    with pytest.raises(ConfigError, match="dataset.fields.question: unknown key"):
        settings(path="x.jsonl", fields={"question": "q"})


def test_shards_cover_every_row_once() -> None:
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(3, 25) == [(0, 3)]
    for n, size in [(500, 25), (17, 5), (1, 1)]:
        covered = [i for s, e in shard_ranges(n, size) for i in range(s, e)]
        assert covered == list(range(n))


def test_snapshot_is_reused_until_the_dataset_settings_change(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"problem": f"p{i}", "answer": str(i)} for i in range(6)])
    out = tmp_path / "problems.parquet"
    base = {"path": str(data), "fields": {"id": None}}
    assert snapshot_problems(settings(**base), out) == 6
    first = out.stat().st_mtime_ns
    assert snapshot_problems(settings(**base, shard_size=2), out) == 6  # shard size does not change problems
    assert out.stat().st_mtime_ns == first
    assert snapshot_problems(settings(**base, limit=4), out) == 4
    assert out.stat().st_mtime_ns != first
    assert read_problems(out, 1, 3)["problem"].tolist() == ["p1", "p2"]
    with pytest.raises(DatasetError, match="shard 2-9 is outside its 4 problems"):
        read_problems(out, 2, 9)
