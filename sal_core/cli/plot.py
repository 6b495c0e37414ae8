"""Draw one figure set per model (accuracy vs n, vs tokens, gain over the baseline sampling, by level)
from the accuracy table of `sal aggregate` alone: OUTDIR/{model}/{figure}.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.evaluation.plot import DPI, load_accuracy, plot_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accuracy", required=True, type=Path, help="accuracy.csv from sal aggregate")
    parser.add_argument("--outdir", required=True, type=Path, help="folder for the {model}/{figure}.png files")
    parser.add_argument(
        "--baseline-sampling",
        metavar="NAME",
        help="sampling the sampling_gain figure subtracts (default: the first sampling in the table;"
        " the workflow passes evaluation.baseline_sampling)",
    )
    parser.add_argument("--dpi", type=int, default=DPI, help=f"resolution of the PNG files (default {DPI})")


def run(args: argparse.Namespace) -> None:
    for path in plot_all(load_accuracy(args.accuracy), args.outdir, args.baseline_sampling, dpi=args.dpi):
        print(path)
