"""Collect the metrics of all runs into one accuracy table: per configuration the mean accuracy over
seeds, its spread (std), a 95% confidence interval and the number of seeds; optionally also the
compute-optimal table (best approach + sampling + vote per budget and difficulty level).
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.evaluation.aggregate import aggregate_runs, read_path_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", nargs="*", default=[], help="metrics parquet files from sal evaluate")
    parser.add_argument(
        "--metrics-list", type=Path, default=None, help="a text file with one metrics path per line (for large grids)"
    )
    parser.add_argument("--out", required=True, type=Path, help="accuracy.csv to write")
    parser.add_argument("--compute-optimal", type=Path, default=None, help="compute_optimal.csv to write")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> None:
    paths = list(args.metrics)
    if args.metrics_list is not None:
        paths += read_path_list(args.metrics_list)
    table, best = aggregate_runs(paths, args.out, args.compute_optimal, progress=not args.no_progress)
    print(f"{args.out}: {len(table)} rows from {len(paths)} metrics files")
    if best is not None:
        print(f"{args.compute_optimal}: {len(best)} rows")
