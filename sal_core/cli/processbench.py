"""Benchmark process reward models on ProcessBench: per split, accuracy on erroneous samples (the
predicted earliest wrong step, the first step scored below --threshold, equals the label), accuracy on
correct samples (no step below the threshold), F1 = their harmonic mean, and the mean F1 over splits.

Each --prm is PRM settings as JSON (as for `sal score`; every type). Writes <out>/<prm>.csv,
<out>/<prm>.samples.parquet (per-sample scores and predictions) and <out>/processbench.png.
Served PRMs (`type: server`) are reached through --servers, as in `sal score`.
With --tables instead of --prm, only draws the chart from existing tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from sal_core.cli.generate import add_servers_argument
from sal_core.errors import ConfigError
from sal_core.learn.processbench import BUILTIN, PLOT_FILE, SPLITS, plot_processbench, run_processbench
from sal_core.pipeline.score import parse_prm_settings
from sal_core.settings.endpoint import read_servers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prm", action="append", default=[], help="PRM settings as a JSON object (repeatable)")
    parser.add_argument("--out", type=Path, help="folder for the tables, per-sample predictions and the chart")
    parser.add_argument(
        "--data",
        default=BUILTIN,
        help="'builtin' (50 samples per split shipped with sal), a folder of {split}.json "
        "(e.g. ../shared/data/processbench), a .jsonl/.json/.parquet file, or Qwen/ProcessBench (Hub)",
    )
    parser.add_argument("--splits", nargs="+", choices=SPLITS, help="splits to run (default: all four)")
    parser.add_argument("--limit", type=int, help="first N samples of each split")
    parser.add_argument("--threshold", type=float, default=0.5, help="a step scored below this is an error")
    parser.add_argument("--tables", nargs="+", type=Path, help="draw the chart from these tables instead")
    parser.add_argument(
        "--plot", type=Path, help=f"the chart to write (default: <out>/{PLOT_FILE}; needed with --tables)"
    )
    parser.add_argument("--no-plot", action="store_true", help="write the tables only (the workflow draws one chart)")
    add_servers_argument(parser)


def run(args: argparse.Namespace) -> None:
    if args.tables:
        if not args.plot:
            raise ConfigError("--tables needs --plot (the PNG to write)")
        plot_processbench([pd.read_csv(path) for path in args.tables], args.plot)
        return
    if not args.prm or args.out is None:
        raise ConfigError("give --prm (at least one) and --out, or --tables and --plot")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: must be at least 1, got {args.limit}")
    settings = [parse_prm_settings(text) for text in args.prm]
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ConfigError(f"--prm: names must differ (got {names})")
    plot = None if args.no_plot else args.plot or ""
    servers = read_servers(args.servers)
    run_processbench(settings, args.out, args.data, args.threshold, args.splits, args.limit, plot, servers)
