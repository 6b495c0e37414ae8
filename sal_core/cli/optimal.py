"""Compute-optimal strategy by difficulty for one model, from its runs' per-problem credit.

Bins the model's problems by difficulty (oracle: pass@1 of a Best-of-N run; predicted: a PRM's mean final
score on the same samples), chooses the best strategy per bin and budget by 2-fold cross-validation
(repeated seeded splits), and compares it with Best-of-N at the same budget. Writes a table and a figure.
When the analysis cannot run (too few problems for the bins, no run to estimate difficulty from, a PRM
that scored nothing) it says why in one line and writes the table's header and the strategies' curves.
See docs/evaluation.md, *Compute-optimal by difficulty*.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

import pandas as pd

from sal_core.errors import ConfigError
from sal_core.evaluation.aggregate import read_path_list
from sal_core.evaluation.credit import read_credit
from sal_core.evaluation.optimal import COLUMNS, OptimalSettings, analyse, strategy_cube, strategy_curves
from sal_core.evaluation.optimal_plot import optimal_figure
from sal_core.tables import write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--credit", nargs="*", default=[], type=Path, help="credit files (sal evaluate --credit)")
    parser.add_argument("--credit-list", type=Path, help="a file naming credit files, one per line")
    parser.add_argument("--model", required=True, help="the model whose runs to analyse")
    parser.add_argument("--out", required=True, type=Path, help="the table to write (CSV)")
    parser.add_argument("--plot", required=True, type=Path, help="the figure to write (PNG)")
    defaults = OptimalSettings()
    for item in fields(OptimalSettings):
        kind = int if isinstance(getattr(defaults, item.name), int) else str
        parser.add_argument("--" + item.name.replace("_", "-"), type=kind, default=getattr(defaults, item.name))


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    settings = OptimalSettings(**{item.name: getattr(args, item.name) for item in fields(OptimalSettings)})
    if settings.bins < 1 or settings.repeats < 1:
        raise ConfigError("evaluation.optimal.bins and .repeats: must be at least 1")
    paths = [*args.credit, *(read_path_list(args.credit_list) if args.credit_list else [])]
    credit = read_credit(paths)
    credit = credit[credit["model"] == args.model]
    if credit.empty:
        raise ConfigError(f"--model: no credit rows for {args.model!r}")
    credit = credit[credit["protocol"] == credit["protocol"].iloc[0]]
    note = ""
    try:
        table, curves, ref = analyse(credit, settings)
    except ConfigError as err:
        note = str(err)
        print(f"compute-optimal ({args.model}): {note}", file=sys.stderr)
        table, curves = pd.DataFrame(columns=list(COLUMNS)), strategy_curves(strategy_cube(credit, _seeds(credit)))
    else:
        if not ref.held_out:
            print(
                f"compute-optimal ({args.model}): difficulty from {ref.label}, the samples strategies are scored on "
                "(one seed in the grid): bins favour the reference run's strategies",
                file=sys.stderr,
            )
    write_text_atomic(table.to_csv(index=False), args.out)
    optimal_figure(table, curves, args.model, args.plot, settings.baseline_sampling, note)
    print(f"{args.out}: {len(table)} rows, {args.plot} in {time.perf_counter() - start:.1f}s")


def _seeds(credit: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(credit["seed"].unique()))
