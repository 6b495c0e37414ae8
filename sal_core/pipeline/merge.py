"""Merging a run's shards: completions joined with one PRM's scores, every problem exactly once.

A shard that is missing, duplicated, stale (its problems differ from the dataset snapshot) or
corrupt is named in the error and never merged; a corrupt one is moved aside so the next run
recomputes that shard alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sal_core.errors import ShardError
from sal_core.paths import shard_range
from sal_core.pipeline.prepare_dataset import read_problems, shard_ranges
from sal_core.tables import read_table, write_table_atomic

COMPLETION_COLUMNS = ["problem_id", "problem", "completions", "completion_tokens", "temperatures"]


def _join_scores(completions: pd.DataFrame, scores: pd.DataFrame, cpath: Path, spath: Path) -> pd.DataFrame:
    if list(scores["problem_id"]) != list(completions["problem_id"]):
        raise ShardError(f"{spath}: scores are for other problems than {cpath}; delete it to rescore")
    for pid, comps, step_scores in zip(
        completions["problem_id"], completions["completions"], scores["scores"], strict=True
    ):
        if len(comps) != len(step_scores):
            raise ShardError(
                f"{spath}: problem {pid!r} has {len(step_scores)} scored completions but {cpath} has {len(comps)}"
            )
    merged = completions.assign(scores=scores["scores"].to_list())
    # the scoring PRM's compute, beside the search's own `prm_tokens` (absent in older scores files)
    if "prm_tokens" in scores.columns:
        merged["score_prm_tokens"] = scores["prm_tokens"].astype("int64").to_list()
    if "completion_prm_tokens" in scores.columns:
        merged["score_completion_prm_tokens"] = [[int(t) for t in row] for row in scores["completion_prm_tokens"]]
    return merged


def _check_coverage(problems: pd.DataFrame, merged: pd.DataFrame, sources: list[Path], shard_size: int) -> None:
    counts = merged["problem_id"].value_counts()
    duplicated = counts[counts > 1]
    if not duplicated.empty:
        pid = duplicated.index[0]
        owners = [str(src) for src, frame_pid in zip(sources, merged["problem_id"], strict=True) if frame_pid == pid]
        raise ShardError(f"problem {pid!r} appears {duplicated.iloc[0]} times, in {', '.join(owners)}")
    missing = problems.loc[~problems["problem_id"].isin(counts.index)]
    if not missing.empty:
        row = int(missing.index[0])
        start, end = next((s, e) for s, e in shard_ranges(len(problems), shard_size) if s <= row < e)
        raise ShardError(
            f"{len(missing)} problems missing, first {missing['problem_id'].iloc[0]!r} (row {row}, "
            f"shard {start}-{end}); its shard file is missing"
        )
    extra = merged.loc[~merged["problem_id"].isin(problems["problem_id"])]
    if not extra.empty:
        raise ShardError(f"problem {extra['problem_id'].iloc[0]!r} is not in the dataset; a stale shard")
    expected = problems.set_index("problem_id")["problem"]
    stale = merged["problem"].to_numpy() != expected.loc[merged["problem_id"]].to_numpy()
    if stale.any():
        raise ShardError(f"{sources[int(stale.nonzero()[0][0])]}: its problems differ from the dataset; a stale shard")


def merge_shards(
    problems_path: str | Path,
    completion_paths: Sequence[str | Path],
    score_paths: Sequence[str | Path],
    run_keys: dict[str, Any],
    out: str | Path,
    shard_size: int | None = None,
) -> pd.DataFrame:
    """Join completions shards with their score shards (same order) and write the merged table."""
    if len(completion_paths) != len(score_paths):
        raise ShardError(f"{len(completion_paths)} completions shards but {len(score_paths)} score shards")
    problems = read_problems(problems_path)
    frames, sources, corrupt = [], [], []
    for cpath, spath in zip(map(Path, completion_paths), map(Path, score_paths), strict=True):
        try:
            completions = read_table(cpath, quarantine_corrupt=True)
            scores = read_table(spath, quarantine_corrupt=True)
        except ShardError as err:
            corrupt.append(str(err))
            continue
        if not {"problem_id", "scores"} <= set(scores.columns):
            raise ShardError(f"{spath}: not a scores shard (needs columns problem_id, scores)")
        missing = [c for c in COMPLETION_COLUMNS if c not in completions.columns]
        if missing:
            raise ShardError(f"{cpath}: not a completions shard (missing columns {', '.join(missing)})")
        expected = shard_range(cpath)
        if expected and len(completions) != expected[1] - expected[0]:
            raise ShardError(
                f"{cpath}: has {len(completions)} problems, its range {expected[0]}-{expected[1]} "
                f"needs {expected[1] - expected[0]}"
            )
        frames.append(_join_scores(completions, scores, cpath, spath))
        sources.extend([cpath] * len(completions))
    if corrupt:
        raise ShardError(f"{len(corrupt)} corrupt shard file(s), not merged: " + " | ".join(corrupt))
    if not frames:
        raise ShardError("no shards to merge")
    merged = pd.concat(frames, ignore_index=True)
    size = shard_size or max(len(f) for f in frames)
    _check_coverage(problems, merged, sources, size)
    order = {pid: i for i, pid in enumerate(problems["problem_id"])}
    merged = merged.iloc[merged["problem_id"].map(order).argsort(kind="stable")].reset_index(drop=True)
    if "level" not in merged.columns or merged["level"].isna().all():
        merged["level"] = problems.set_index("problem_id")["level"].loc[merged["problem_id"]].to_numpy()
    write_table_atomic(merged, out, metadata={k: str(v) for k, v in run_keys.items()})
    return merged
