"""Grade a merged run and write its accuracy at n = 1, 2, 4, ... for every vote and difficulty level.

Votes: majority, naive and weighted best-of-n (PRM scores aggregated by --aggregation), and
unbiased pass@k. Each n is averaged over --num-subsamples random subsamples (whole DVTS subtrees),
with a 95% bootstrap confidence interval over problems. Every answer check runs in a worker
process that is killed after --timeout seconds; a timed-out check counts as wrong and is
reported in the `timeouts` column. Reads parquet (run keys from its metadata) or jsonl (run
keys from the flags below; flags also override the metadata). `--protocol sal` scores as
search-and-learn does instead (first n completions, first group wins ties; see sal_core/evaluation/sal_protocol.py).
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import fields
from pathlib import Path

from sal_core.cli.options import flag
from sal_core.constants import AGGREGATIONS, PROTOCOLS
from sal_core.errors import ConfigError
from sal_core.evaluation.evaluate import RUN_KEYS, EvalOptions
from sal_core.evaluation.run import evaluate_run, summary, write_credit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merged", required=True, type=Path, help="merged run, parquet or jsonl")
    parser.add_argument("--out", type=Path, help="metrics parquet to write (atomically)")
    parser.add_argument(
        "--credit",
        type=Path,
        help="instead of the metrics: each problem's credit at every n and vote, parquet (compute-optimal analysis)",
    )
    parser.add_argument(
        "--protocol", default=EvalOptions.protocol, choices=PROTOCOLS, help=EvalOptions.help("protocol")
    )
    parser.add_argument(
        "--aggregation", default=EvalOptions.aggregation, choices=AGGREGATIONS, help=EvalOptions.help("aggregation")
    )
    parser.add_argument("--graders", default=EvalOptions.graders, help=EvalOptions.help("graders"))
    parser.add_argument("--grader-files", default=None, metavar="PREFIX", help=EvalOptions.help("grader_files"))
    for name, kind in (("num_subsamples", int), ("timeout", float), ("seed", int), ("bootstrap", int)):
        parser.add_argument(flag(name), type=kind, default=getattr(EvalOptions, name), help=EvalOptions.help(name))
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="grading processes (default: CPU count, at most 8)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    keys = parser.add_argument_group("run keys (for files without metadata, or to override it)")
    for key in RUN_KEYS:
        name = "--run-seed" if key == "seed" else f"--{key}"  # --seed seeds the subsampling
        keys.add_argument(name, dest=f"run_{key}", default=None)
    keys.add_argument("--n", default=None, help="the run's n (recorded only)")
    keys.add_argument("--beam-width", default=None, help="the run's beam width (recorded only)")


def run(args: argparse.Namespace) -> None:
    # every option but `progress` is a flag of the same name (add_arguments)
    chosen = {field.name: getattr(args, field.name) for field in fields(EvalOptions) if field.name != "progress"}
    options = EvalOptions(**chosen, progress=not args.no_progress)
    overrides = {key: getattr(args, f"run_{key}") for key in RUN_KEYS}
    start = time.perf_counter()
    if (args.out is None) == (args.credit is None):
        raise ConfigError("--out or --credit: give exactly one")
    if args.credit is not None:
        table = write_credit(args.merged, args.credit, overrides, options)
        print(f"{args.credit}: {len(table)} rows in {time.perf_counter() - start:.1f}s")
        return
    rows = evaluate_run(args.merged, args.out, overrides, options, {"n": args.n, "beam_width": args.beam_width})
    print(f"{args.out}: {len(rows)} rows in {time.perf_counter() - start:.1f}s ({summary(rows)})")
