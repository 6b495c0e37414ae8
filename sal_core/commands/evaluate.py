"""Grade a merged run and write its accuracy at n = 1, 2, 4, ... for every vote and difficulty level.

Votes: majority, naive and weighted best-of-n (PRM scores aggregated by --aggregation), and
unbiased pass@k. Each n is averaged over --num-subsamples random subsamples (whole DVTS subtrees),
with a 95% bootstrap confidence interval over problems. Every answer check runs in a worker
process that is killed after --timeout seconds; a timed-out check counts as wrong and is
reported in the `timeouts` column. Reads parquet (run keys from its metadata) or jsonl (run
keys from the flags below; flags also override the metadata). `--protocol sal` scores as
search-and-learn does instead (first n completions, first group wins ties; see sal_core/evaluation_sal.py).
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sal_core.errors import ConfigError
from sal_core.evaluation import PROTOCOLS, RUN_KEYS, EvalOptions, evaluate_file
from sal_core.io import write_table_atomic
from sal_core.prm.aggregation import AGGREGATIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--merged", required=True, type=Path, help="merged run, parquet or jsonl")
    parser.add_argument("--out", required=True, type=Path, help="metrics parquet to write (atomically)")
    parser.add_argument(
        "--protocol",
        default="default",
        choices=PROTOCOLS,
        help="default: random subsamples, fractional ties (sound); sal: search-and-learn's own scoring, "
        "first n completions, first group wins ties (to compare with published numbers)",
    )
    parser.add_argument(
        "--aggregation",
        default="last",
        choices=AGGREGATIONS,
        help="how step scores become one score for naive/weighted best-of-n (default: last)",
    )
    parser.add_argument(
        "--num-subsamples", type=int, default=64, help="random subsamples per problem and n (default: 64)"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="wall-clock seconds allowed for one parse or comparison (default: 5)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="grading processes (default: CPU count, at most 8)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for subsamples and the bootstrap")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    keys = parser.add_argument_group("run keys (for files without metadata, or to override it)")
    for key in RUN_KEYS:
        flag = "--run-seed" if key == "seed" else f"--{key}"  # --seed seeds the subsampling
        keys.add_argument(flag, dest=f"run_{key}", default=None)
    keys.add_argument("--n", default=None, help="the run's n (recorded only)")
    keys.add_argument("--beam-width", default=None, help="the run's beam width (recorded only)")


def run(args: argparse.Namespace) -> None:
    if args.num_subsamples < 1:
        raise ConfigError(f"--num-subsamples: must be at least 1, got {args.num_subsamples}")
    if args.timeout <= 0:
        raise ConfigError(f"--timeout: must be positive, got {args.timeout}")
    if args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    options = EvalOptions(
        aggregation=args.aggregation,
        num_subsamples=args.num_subsamples,
        timeout=args.timeout,
        workers=args.workers,
        seed=args.seed,
        progress=not args.no_progress,
        protocol=args.protocol,
    )
    overrides = {key: getattr(args, f"run_{key}") for key in RUN_KEYS}
    start = time.perf_counter()
    rows = evaluate_file(args.merged, overrides, options)
    meta = {k: str(rows[k].iloc[0]) for k in RUN_KEYS} if len(rows) else {}
    for key, value in (("n", args.n), ("beam_width", args.beam_width)):
        if value is not None:
            meta[key] = str(value)
    write_table_atomic(rows, args.out, metadata=meta)
    overall = rows[(rows["level"] == "all")].sort_values("n").groupby("vote").tail(1)
    summary = ", ".join(f"{r.vote}@{r.n}={r.accuracy:.3f}" for r in overall.itertuples())
    print(f"{args.out}: {len(rows)} rows in {time.perf_counter() - start:.1f}s ({summary})")
