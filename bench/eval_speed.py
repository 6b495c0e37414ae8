"""Time `sal evaluate`'s work (read, grade, all votes at all n, intervals) on a 500 x 256 merged file.

Reads ../shared (beside the repository): without a path it writes the file with
../shared/tools/synthetic_results.py from ../shared/data/math500.jsonl.

Then, with --graders (default: all of them), what each further grader costs on the same file:
its own grading plus its votes at every n (sal_core.evaluation.disagreement.compare_graders).

Usage: python bench/eval_speed.py [MERGED.jsonl|parquet] [--workers W] [--num-subsamples K] [--graders LIST]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared_folder import shared_file

from sal_core.evaluation.disagreement import compare_graders
from sal_core.evaluation.evaluate import EvalOptions, compute_metrics, grade_frame, read_run_keys
from sal_core.evaluation.graders import GRADERS
from sal_core.tables import read_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("merged", nargs="?", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num-subsamples", type=int, default=64)
    parser.add_argument("--graders", default=",".join(GRADERS), help="graders to time, the first alone first")
    args = parser.parse_args()
    path = args.merged
    if path is None:
        path = Path(tempfile.gettempdir()) / "sal_bench_synth.jsonl"
        if not path.exists():
            subprocess.run(
                [
                    sys.executable,
                    str(shared_file("tools/synthetic_results.py")),
                    str(shared_file("data/math500.jsonl")),
                    str(path),
                ],
                check=True,
            )
    names = args.graders.split(",")
    options = EvalOptions(workers=args.workers, num_subsamples=args.num_subsamples, progress=False, graders=names[0])
    start = time.perf_counter()
    frame = read_table(path)
    read_s = time.perf_counter() - start
    graded = grade_frame(frame, path, options)
    grade_s = time.perf_counter() - start - read_s
    rows = compute_metrics(graded, read_run_keys(path, {}), options)
    total = time.perf_counter() - start
    n_completions = int(graded.valid.sum())
    print(
        f"{len(frame)} problems x {graded.valid.shape[1]} completions ({n_completions} in all), "
        f"{args.workers} workers, {args.num_subsamples} subsamples: read {read_s:.1f}s, "
        f"grade {grade_s:.1f}s, metrics {total - read_s - grade_s:.1f}s, total {total:.1f}s "
        f"({len(rows)} metric rows, {int(graded.timeouts.sum())} timeouts)"
    )
    cpu = sum(
        resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    print(f"CPU time, all processes: {cpu:.1f}s (wall time above depends on other load on the machine)")
    keys = read_run_keys(path, {})
    for extra in names[1:]:
        start, cpu_before = time.perf_counter(), _cpu()
        both = EvalOptions(**{**vars(options), "graders": f"{names[0]},{extra}"})
        compare_graders(frame, graded, rows, keys, both)
        print(f"+ grader {extra}: {time.perf_counter() - start:.1f}s wall, {_cpu() - cpu_before:.1f}s CPU")


def _cpu() -> float:
    return sum(
        resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )


if __name__ == "__main__":
    main()
