"""Draw accuracy_vs_n.png (a panel per model, a line per approach + sampling + vote, 95% CI bands),
accuracy_vs_tokens.png and accuracy_by_level.png from the accuracy table of `sal aggregate` alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.evaluation.plot import load_accuracy, plot_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accuracy", required=True, type=Path, help="accuracy.csv from sal aggregate")
    parser.add_argument("--outdir", required=True, type=Path, help="folder for the PNG files")


def run(args: argparse.Namespace) -> None:
    for path in plot_all(load_accuracy(args.accuracy), args.outdir):
        print(path)
