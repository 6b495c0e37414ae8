"""Join all shards of one run with one PRM's scores into merged/{prm}.parquet, checking that every
problem of the dataset is present exactly once; names the missing, duplicated, stale or corrupt shard
otherwise (a corrupt one is moved aside so that a rerun recomputes it)."""

from __future__ import annotations

import argparse
import json

from sal_core.pipeline.merge import merge_shards


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problems", required=True, help="the dataset snapshot, problems.parquet")
    parser.add_argument("--completions", nargs="+", required=True, help="completions shards, in shard order")
    parser.add_argument("--scores", nargs="+", required=True, help="score shards, same order as --completions")
    parser.add_argument("--run", default="{}", help="run keys as JSON, stored as parquet metadata")
    parser.add_argument("--shard-size", type=int, default=None, help="problems per shard (names missing shards)")
    parser.add_argument("--out", required=True, help="merged parquet to write")


def run(args: argparse.Namespace) -> None:
    merged = merge_shards(args.problems, args.completions, args.scores, json.loads(args.run), args.out, args.shard_size)
    print(f"{args.out}: {len(merged)} problems from {len(args.completions)} shards")
