"""Check `sal evaluate --protocol sal` against search-and-learn's own numbers on the synthetic 500 x 256 file.

Reads ../shared (next to the repository root): writes the merged file with
../shared/tools/synthetic_results.py from ../shared/data/math500.jsonl (defaults: 500 problems x 256
completions, seed 0), runs `sal evaluate --protocol sal` on it, prints our accuracy table next to the
one search-and-learn's code gives (issue 8, item 6) with the largest difference, and exits 1 if any
cell differs by more than 0.010. Also reports wall and CPU time.

Usage: python bench/sal_protocol.py [--workers W] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sal_core.cli import main as sal
from sal_core.tables import read_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOLERANCE = 0.010
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# search-and-learn's score() + the Qwen2.5-Math grader on this file (issue 8, item 6)
EXPECTED = {
    "majority": (0.504, 0.504, 0.636, 0.702, 0.750, 0.756, 0.782, 0.794, 0.804),
    "naive": (0.504, 0.626, 0.726, 0.794, 0.834, 0.880, 0.902, 0.920, 0.946),
    "weighted": (0.504, 0.628, 0.716, 0.748, 0.798, 0.828, 0.846, 0.842, 0.844),
}


def cpu_seconds() -> float:
    return sum(
        resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )


def table(label: str, values: dict[str, list[float]], cell: str = ">7.3f") -> str:
    lines = [f"{label:<10}" + "".join(f"{n:>7}" for n in SIZES)]
    lines += [f"{vote:<10}" + "".join(f"{v:{cell}}" for v in row) for vote, row in values.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder for the synthetic file and metrics (default: a temp dir)")
    args = parser.parse_args()
    if not (SHARED / "tools/synthetic_results.py").exists():
        sys.exit(f"needs {SHARED}/tools/synthetic_results.py and {SHARED}/data/math500.jsonl")
    if args.keep is None:
        with tempfile.TemporaryDirectory(prefix="sal_protocol_") as scratch:
            sys.exit(check(Path(scratch), args.workers))
    args.keep.mkdir(parents=True, exist_ok=True)
    sys.exit(check(args.keep, args.workers))


def check(folder: Path, workers: int) -> int:
    """Write the synthetic file into `folder`, evaluate it, print the tables; 0 when every cell is within tolerance."""
    merged, out = folder / "synthetic.jsonl", folder / "metrics_sal.parquet"
    tool = [sys.executable, str(SHARED / "tools/synthetic_results.py"), str(SHARED / "data/math500.jsonl")]
    subprocess.run([*tool, str(merged)], check=True)
    start, cpu = time.perf_counter(), cpu_seconds()
    flags = ["--protocol", "sal", "--workers", str(workers), "--no-progress"]
    sal(["evaluate", "--merged", str(merged), "--out", str(out), *flags])
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    rows = read_table(out)
    at = rows[rows["level"] == "all"].set_index(["vote", "n"])["accuracy"]
    ours = {vote: [float(at[(vote, n)]) for n in SIZES] for vote in EXPECTED}
    diffs = {vote: [o - e for o, e in zip(ours[vote], EXPECTED[vote], strict=True)] for vote in EXPECTED}
    worst = max(abs(d) for row in diffs.values() for d in row)
    print(table("ours", ours), table("sal", {v: list(r) for v, r in EXPECTED.items()}), sep="\n\n")
    print("\n" + table("ours - sal", diffs, cell=">+7.3f"))
    print(f"\nmax |ours - sal| = {worst:.3f} (tolerance {TOLERANCE}); timeouts: {int(rows['timeouts'].max())}")
    print(f"sal evaluate --protocol sal: {wall:.1f}s wall, {cpu:.1f}s CPU (all processes)")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    main()
