"""Run a command (snakemake) with a warm-start server around it: every `sal` step the command runs
on this machine is forked from a process that has already imported torch and transformers, instead
of importing them itself (about 3 s per model job on a laptop). The steps run as before otherwise:
their own folder, environment, streams, thread count and exit status (sal_core.warm_start). The
server stops when the command ends. `make demo` runs:

    sal warm-start -- snakemake

Steps started while no server answers (plain `snakemake`, Slurm jobs on other nodes) run cold.
"""

from __future__ import annotations

import argparse

from sal_core.cli.announce import trailing_command
from sal_core.warm_start import run_with_warm_start


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run (snakemake ...)")


def run(args: argparse.Namespace) -> int:
    from sal_core.cli import main

    return run_with_warm_start(trailing_command(args, "warm-start"), main)
