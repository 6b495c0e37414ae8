"""Run one search method (Best-of-N, beam search, DVTS or particle filtering) on problems [start, end).

The job (policy model, search settings and, for the guided methods, the in-search PRM) is a
GenerateJob as JSON. Writes one row per problem, in dataset order, with its completions, token
counts, temperatures, groups, finish reasons and (guided methods) the in-search step scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.pipeline.generate import generate_shard, parse_job
from sal_core.settings.endpoint import read_servers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problems", required=True, type=Path, help="problems.parquet from prepare-dataset")
    parser.add_argument("--start", required=True, type=int, help="first row of the shard (0-based)")
    parser.add_argument("--end", required=True, type=int, help="row after the last row of the shard")
    parser.add_argument("--job", required=True, help="GenerateJob as JSON text (or the path of a JSON file)")
    parser.add_argument("--out", required=True, type=Path, help="completions.parquet to write (atomically)")
    add_servers_argument(parser)


def add_servers_argument(parser: argparse.ArgumentParser) -> None:
    """`--servers`, shared with `sal score`."""
    parser.add_argument(
        "--servers",
        help="server locations by model or PRM name, as JSON text or a JSON file (the workflow writes "
        "results/{dataset}/servers.json from the config's `servers:` block); needed by served models and PRMs",
    )


def run(args: argparse.Namespace) -> None:
    job = parse_job(args.job)
    generate_shard(args.problems, args.start, args.end, job, args.out, read_servers(args.servers))
