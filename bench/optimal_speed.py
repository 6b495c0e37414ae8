"""What the compute-optimal analysis adds to a 500-problem grid's aggregation.

Reads ../shared (beside the repository): writes two 500 x 256 merged files (seeds 0 and 1) with
../shared/tools/synthetic_results.py from ../shared/data/math500.jsonl, then times, per run, `sal evaluate`
(the metrics: the existing per-run work) and `sal evaluate --credit` (rule credit: what the analysis adds
per run), and over a grid of 12 runs (2 approaches x 3 samplings x 2 seeds, their files copies of the two
synthetic runs relabelled) `sal aggregate` (the existing aggregation) and `sal optimal` (rule optimal).
The copies make every approach and sampling score alike, so the table is degenerate; only sizes set
the time (500 problems, 9 values of n, 18 strategies per n: 2 approaches x 3 samplings x 3 votes;
2 difficulty estimates, 5 bins, 20 repeated splits).

Usage: python bench/optimal_speed.py [--workers W] [--repeats R]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from shared_folder import shared_file

from sal_core.evaluation.aggregate import aggregate_runs
from sal_core.evaluation.credit import read_credit
from sal_core.evaluation.evaluate import EvalOptions
from sal_core.evaluation.optimal import OptimalSettings, analyse
from sal_core.evaluation.run import evaluate_run, write_credit
from sal_core.tables import write_table_atomic

APPROACHES = ("bon", "bon-b")
SAMPLINGS = ("t0.4", "t0.8", "t1.2")


def synthetic(seed: int, folder: Path) -> Path:
    path = folder / f"sal_bench_synth_seed{seed}.jsonl"
    if not path.exists():
        tool, data = shared_file("tools/synthetic_results.py"), shared_file("data/math500.jsonl")
        subprocess.run([sys.executable, str(tool), str(data), str(path), "--seed", str(seed)], check=True)
    return path


def cpu() -> float:
    both = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(r.ru_utime + r.ru_stime for r in both)


def timed(what: str, work, *args) -> object:
    wall, used = time.perf_counter(), cpu()
    result = work(*args)
    print(f"{what}: {time.perf_counter() - wall:.1f}s wall, {cpu() - used:.1f}s CPU", flush=True)
    return result


def relabel(frame: pd.DataFrame, approach: str, sampling: str, seed: int) -> pd.DataFrame:
    return frame.assign(model="synth", approach=approach, sampling=sampling, seed=str(seed), method="best_of_n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="sal_bench_optimal_"))
    options = EvalOptions(workers=args.workers, progress=False, num_subsamples=32)
    metrics, credit = {}, {}
    for seed in (0, 1):
        merged = synthetic(seed, folder)
        keys = {"seed": str(seed)}
        metrics[seed] = timed(f"seed {seed}: sal evaluate", evaluate_run, merged, work / "m.parquet", keys, options)
        credit[seed] = timed(
            f"seed {seed}: sal evaluate --credit", write_credit, merged, work / "c.parquet", keys, options
        )
    metric_files, credit_files = [], []
    for approach in APPROACHES:
        for sampling in SAMPLINGS:
            for seed in (0, 1):
                name = f"{approach}-{sampling}-{seed}.parquet"
                write_table_atomic(relabel(metrics[seed], approach, sampling, seed), work / f"metrics-{name}")
                write_table_atomic(relabel(credit[seed], approach, sampling, seed), work / f"credit-{name}")
                metric_files.append(work / f"metrics-{name}")
                credit_files.append(work / f"credit-{name}")
    timed("grid of 12 runs: sal aggregate", lambda: aggregate_runs(metric_files, work / "a.csv", work / "o.csv", False))
    settings = OptimalSettings(repeats=args.repeats, baseline_sampling="t0.8")
    table = timed(
        "grid of 12 runs: read credit + sal optimal's analysis", lambda: analyse(read_credit(credit_files), settings)[0]
    )
    print(f"{len(table)} table rows, {len(credit[0])} credit rows per run")


if __name__ == "__main__":
    main()
