"""Load a dataset (built-in, local jsonl/json/parquet/csv, or Hub), normalise its fields to
problem_id / problem / answer / level, check every row, and write problems.parquet.

The workflow does this itself when it is parsed; run it by hand to snapshot a Hub dataset on a
machine with network access before running on compute nodes without it."""

from __future__ import annotations

import argparse
import json

from sal_core.pipeline.prepare_dataset import DatasetSettings, snapshot_problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="the config's `dataset:` block as JSON")
    parser.add_argument("--out", required=True, help="problems.parquet to write")


def run(args: argparse.Namespace) -> None:
    settings = DatasetSettings.from_dict(json.loads(args.dataset))
    rows = snapshot_problems(settings, args.out)
    print(f"{args.out}: {rows} problems from {settings.source} dataset {settings.path!r}")
