"""Summarise the work a grid still has to do, by run: `snakemake -n` grouped by the run of each job.
Arguments after `--` go to `snakemake -n` as they are, e.g. `sal missing -- --configfile
config/experiments/hot_cold_sweep.yaml`; `--from FILE` reads a saved `snakemake -n` output instead.
`snakemake -n --quiet rules` counts the same jobs by rule only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.missing import by_run, dry_run, format_table, planned_jobs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", type=Path, help="a saved `snakemake -n` output to read instead")
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="arguments for `snakemake -n` (after --)")


def run(args: argparse.Namespace) -> None:
    snakemake_args = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    text = args.source.read_text() if args.source else dry_run(snakemake_args)
    print(format_table(by_run(planned_jobs(text))))
