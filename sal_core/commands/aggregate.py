"""Collect the metrics of all runs into one accuracy table: per configuration the mean accuracy over
seeds, its spread (std), a 95% confidence interval and the number of seeds; optionally also the
compute-optimal table (best approach + sampling + vote per budget and difficulty level).
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.aggregation_table import accuracy_table, compute_optimal, read_metrics
from sal_core.errors import ConfigError
from sal_core.io import write_text_atomic


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
        if not args.metrics_list.exists():
            raise ConfigError(f"--metrics-list: {args.metrics_list} not found")
        paths += [line.strip() for line in args.metrics_list.read_text().splitlines() if line.strip()]
    if not paths:
        raise ConfigError("give metrics files with --metrics or --metrics-list")
    table = accuracy_table(read_metrics(paths, progress=not args.no_progress))
    write_text_atomic(table.to_csv(index=False), args.out)
    print(f"{args.out}: {len(table)} rows from {len(paths)} metrics files")
    if args.compute_optimal is not None:
        best = compute_optimal(table)
        write_text_atomic(best.to_csv(index=False), args.compute_optimal)
        print(f"{args.compute_optimal}: {len(best)} rows")
