"""Merging shards: every problem exactly once, in dataset order; the bad shard is named, never merged."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sal_core.errors import ShardError
from sal_core.pipeline.merge import merge_shards
from sal_core.tables import read_metadata, read_table, write_table_atomic

PROBLEMS = pd.DataFrame(
    {
        "problem_id": [f"p{i}" for i in range(5)],
        "problem": [f"What is {i} + {i}?" for i in range(5)],
        "answer": [str(2 * i) for i in range(5)],
        "level": ["1", "2", "1", "2", "3"],
    }
)
RANGES = [(0, 2), (2, 4), (4, 5)]


def write_shard(root: Path, start: int, end: int, problems: pd.DataFrame = PROBLEMS) -> tuple[Path, Path]:
    rows = problems.iloc[start:end]
    completions = rows.assign(
        completions=[[f"c{pid}-{k}" for k in range(3)] for pid in rows["problem_id"]],
        completion_tokens=[[1, 2, 3]] * len(rows),
        temperatures=[[0.8, 0.8, 0.8]] * len(rows),
    )
    shard = root / "shards" / f"{start}-{end}"
    cpath = write_table_atomic(completions, shard / "completions.parquet")
    spath = write_table_atomic(
        pd.DataFrame({"problem_id": rows["problem_id"], "scores": [[[0.5], [0.25, 0.75], [1.0]]] * len(rows)}),
        shard / "scores" / "judge.parquet",
    )
    return cpath, spath


@pytest.fixture
def run_dir(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    write_table_atomic(PROBLEMS, tmp_path / "problems.parquet")
    paths = [write_shard(tmp_path, s, e) for s, e in RANGES]
    return tmp_path, [c for c, _ in paths], [s for _, s in paths]


def merge(run_dir, completions, scores):
    keys = {"model": "m", "n": 3}
    return merge_shards(run_dir / "problems.parquet", completions, scores, keys, run_dir / "m.parquet")


def test_merge_joins_scores_in_dataset_order_with_run_metadata(run_dir) -> None:
    root, completions, scores = run_dir
    # shards given out of order still merge in dataset order
    merged = merge(root, completions[::-1], scores[::-1])
    assert merged["problem_id"].tolist() == PROBLEMS["problem_id"].tolist()
    back = read_table(root / "m.parquet")
    assert back["completions"][3].tolist() == ["cp3-0", "cp3-1", "cp3-2"]
    assert [list(s) for s in back["scores"][0]] == [[0.5], [0.25, 0.75], [1.0]]
    assert read_metadata(root / "m.parquet") == {"model": "m", "n": "3"}


def test_missing_shard_is_named_by_its_range(run_dir) -> None:
    root, completions, scores = run_dir
    with pytest.raises(ShardError, match=r"2 problems missing, first 'p2' \(row 2, shard 2-4\)"):
        merge(root, [completions[0], completions[2]], [scores[0], scores[2]])
    assert not (root / "m.parquet").exists()


def test_duplicated_problem_names_both_shards(run_dir, tmp_path: Path) -> None:
    root, completions, scores = run_dir
    extra_c, extra_s = write_shard(tmp_path / "copy", 0, 2)
    with pytest.raises(ShardError, match=r"problem 'p0' appears 2 times, in .*0-2/completions.parquet, .*0-2/comp"):
        merge(root, [*completions, extra_c], [*scores, extra_s])


def test_corrupt_shard_is_moved_aside_and_intact_ones_untouched(run_dir) -> None:
    root, completions, scores = run_dir
    data = completions[1].read_bytes()
    completions[1].write_bytes(data[: len(data) // 2])
    before = {p: p.stat().st_mtime_ns for p in [completions[0], completions[2], *scores]}
    expected = r"1 corrupt shard.*2-4/completions.parquet: unreadable or corrupt.*moved aside"
    with pytest.raises(ShardError, match=expected):
        merge(root, completions, scores)
    assert not completions[1].exists()
    assert completions[1].with_name("completions.parquet.corrupt").exists()
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert not (root / "m.parquet").exists()


def test_stale_shard_with_other_problems_is_refused(run_dir) -> None:
    root, completions, scores = run_dir
    changed = PROBLEMS.assign(problem=[f"Changed {i}" for i in range(5)])
    write_shard(root, 2, 4, changed)
    with pytest.raises(ShardError, match=r"2-4/completions.parquet: its problems differ from the dataset"):
        merge(root, completions, scores)


def test_scores_that_do_not_match_their_completions_are_refused(run_dir) -> None:
    root, completions, scores = run_dir
    write_table_atomic(pd.DataFrame({"problem_id": ["p2", "p3"], "scores": [[[0.1]], [[0.2]]]}), scores[1])
    with pytest.raises(ShardError, match=r"problem 'p2' has 1 scored completions but .* has 3"):
        merge(root, completions, scores)


def test_shard_with_fewer_rows_than_its_range_is_refused(run_dir) -> None:
    root, completions, scores = run_dir
    table = read_table(completions[1]).iloc[:1]
    write_table_atomic(table, completions[1])
    write_table_atomic(read_table(scores[1]).iloc[:1], scores[1])
    with pytest.raises(ShardError, match=r"has 1 problems, its range 2-4 needs 2"):
        merge(root, completions, scores)


def test_merge_carries_the_compute_of_search_and_scoring(run_dir) -> None:
    """The completions' own compute columns pass through; the scores file's `prm_tokens` and
    `completion_prm_tokens` (what the scoring PRM read) arrive as `score_prm_tokens` and
    `score_completion_prm_tokens`."""
    root, completions, scores = run_dir
    for cpath, spath in zip(completions, scores, strict=True):
        write_table_atomic(read_table(cpath).assign(generated_tokens=40, prm_tokens=7), cpath)
        frame = read_table(spath)
        write_table_atomic(
            frame.assign(prm_tokens=[11] * len(frame), completion_prm_tokens=[[5, 4, 2]] * len(frame)), spath
        )
    merged = merge(root, completions, scores)
    assert merged["generated_tokens"].tolist() == [40] * 5 and merged["prm_tokens"].tolist() == [7] * 5
    back = read_table(root / "m.parquet")
    assert back["score_prm_tokens"].tolist() == [11] * 5
    assert [list(r) for r in back["score_completion_prm_tokens"]] == [[5, 4, 2]] * 5
    with pytest.raises(ShardError, match="not a scores shard"):
        merge(root, completions, [completions[0], *scores[1:]])
