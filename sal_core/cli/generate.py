"""Run one search method (Best-of-N, beam search or DVTS) on problems [start, end) of a problems table.

The job (policy model, search settings and, for beam search / DVTS, the in-search PRM) is a
GenerateJob as JSON. Writes one row per problem, in dataset order, with its completions, token
counts, temperatures, groups, finish reasons and (beam search / DVTS) the in-search step scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.pipeline.generate import generate_shard, parse_job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problems", required=True, type=Path, help="problems.parquet from prepare-dataset")
    parser.add_argument("--start", required=True, type=int, help="first row of the shard (0-based)")
    parser.add_argument("--end", required=True, type=int, help="row after the last row of the shard")
    parser.add_argument("--job", required=True, help="GenerateJob as JSON text (or the path of a JSON file)")
    parser.add_argument("--out", required=True, type=Path, help="completions.parquet to write (atomically)")


def run(args: argparse.Namespace) -> None:
    job = parse_job(args.job)
    generate_shard(args.problems, args.start, args.end, job, args.out)
