"""Time `snakemake -n` on the hot/cold sweep (~45,000 jobs) against the leanest Snakefile of its shape.

The project's workflow validates the config, expands the grid with sal_core and gives every job its
settings; `../shared/bench/dag_skeleton.smk` has the same rules, the same job count and nothing
else: the floor Snakemake itself costs for a DAG this size. Both are dry-run in one invocation,
alternating, each with the same flags from the repository root (so the default profile applies to
both), and the script prints each one's best wall time and CPU time (user + system: on shared cores
the steadier of the two), peak memory (max RSS) and job count, and the ratios.

`--finished` also times the dry run of a finished sweep ("Nothing to be done"): a temporary folder
gets every output file, with Snakemake's own metadata records, as a real run would leave them
(see fake_finished.py).

`--baseline TREE` times another checkout of the project (e.g. `git archive COMMIT | tar -x -C TREE`)
in the skeleton's place, its own Snakefile and sal_core (PYTHONPATH=TREE), on the same config: a
change's cost side by side with the code before it (with `--finished`, both finished sweeps are faked
with this checkout's sal_core on the import path: the same files wherever the two DAGs agree).

Reads ../shared (bench/shared_folder.py): the skeleton and MATH-500 (`data/math500.jsonl`; the
sweep names the Hub copy, which this machine cannot reach). Runs only dry runs.

    python bench/dag_scale.py [--repeat 2] [--finished] [--dataset PATH] [--baseline TREE]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from shared_folder import shared_file

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "workflow" / "Snakefile"
FLAGS = ["-n", "--quiet", "rules", "--cores", "1"]


@dataclass
class Timing:
    seconds: float
    cpu_seconds: float
    peak_mb: float
    jobs: int
    nothing_to_do: bool


def sweep_config(dataset: Path) -> dict:
    config = yaml.safe_load((REPO / "config" / "experiments" / "hot_cold_sweep.yaml").read_text())
    config["dataset"].update(source="local", path=str(dataset))
    return config


def skeleton_config(config: dict, num_problems: int) -> list[str]:
    """The skeleton's `--config` for the sweep's shape (it has the same three approaches)."""
    shards = -(-num_problems // config["dataset"]["shard_size"])
    sizes = dict(models=len(config["models"]), samplings=len(config["samplings"]), seeds=len(config["seeds"]))
    return ["--config", *(f"{key}={value}" for key, value in {**sizes, "shards": shards}.items())]


def dry_run(args: list[str], workdir: Path, tree: Path = REPO) -> Timing:
    """One `snakemake -n` in its own process (run from `tree`, importing its sal_core): wall time, its
    max RSS (os.wait4), the job total."""
    command = [sys.executable, "-m", "snakemake", *FLAGS, "-d", str(workdir), *args]
    log = workdir / "dry_run.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tree, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if process.returncode:
        sys.exit(f"dry run failed: {' '.join(command)}\n{text[-3000:]}")
    total = re.search(r"^total\s+(\d+)", text, re.M)
    cpu = usage.ru_utime + usage.ru_stime
    return Timing(elapsed, cpu, usage.ru_maxrss / 1024, int(total[1]) if total else 0, "Nothing to be done" in text)


Side = tuple[list[str], Path, Path]  # snakemake arguments, working folder, tree it runs from


def compare(label: str, project: Side, skeleton: Side, repeat: int, other: str = "skeleton") -> None:
    """Alternate project and skeleton (or baseline) dry runs; print every try, the best of each, the ratio."""
    print(f"\n{label}: load average {os.getloadavg()[0]:.2f} before")
    runs: dict[str, list[Timing]] = {"project": [], other: []}
    for attempt in range(repeat):
        for name, (args, workdir, tree) in (("project", project), (other, skeleton)):
            timing = dry_run(args, workdir, tree)
            runs[name].append(timing)
            print(
                f"  try {attempt + 1} {name:<9} {timing.seconds:7.1f} s wall {timing.cpu_seconds:7.1f} s CPU"
                f"  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    best = {name: min(timings, key=lambda t: t.seconds) for name, timings in runs.items()}
    cpu = {name: min(t.cpu_seconds for t in timings) for name, timings in runs.items()}
    print(f"{'':<10} {'jobs':>8} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'nothing to do':>14}")
    for name, timing in best.items():
        print(
            f"{name:<10} {timing.jobs:>8} {timing.seconds:>8.1f} {cpu[name]:>8.1f} {timing.peak_mb:>8.0f}"
            f" {timing.nothing_to_do!s:>14}"
        )
    wall_ratio = best["project"].seconds / best[other].seconds
    print(f"ratio project / {other}: {wall_ratio:.2f}x wall, {cpu['project'] / cpu[other]:.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="local MATH-500 jsonl (default ../shared/data/math500.jsonl)")
    parser.add_argument("--repeat", type=int, default=2, help="dry runs of each, alternating; best time kept")
    parser.add_argument("--finished", action="store_true", help="also time the dry run of a finished sweep")
    parser.add_argument("--baseline", type=Path, help="another checkout of the project, timed instead of the skeleton")
    args = parser.parse_args()
    dataset = args.dataset or shared_file("data/math500.jsonl")
    skeleton = shared_file("bench/dag_skeleton.smk")
    config = sweep_config(dataset)
    num_problems = sum(1 for line in dataset.open() if line.strip())
    print(f"hot/cold sweep: {num_problems} problems in shards of {config['dataset']['shard_size']}; flags {FLAGS}")
    with tempfile.TemporaryDirectory(prefix="dag_scale.") as tmp:
        project_dir, skeleton_dir = Path(tmp) / "project", Path(tmp) / "skeleton"
        project_dir.mkdir()
        skeleton_dir.mkdir()
        configfile = project_dir / "config.yaml"
        configfile.write_text(yaml.safe_dump(config))
        project = (["-s", str(SNAKEFILE), "--configfile", str(configfile)], project_dir, REPO)
        if args.baseline:
            other, tree = "baseline", args.baseline.resolve()
            skeleton_run = (
                ["-s", str(tree / "workflow" / "Snakefile"), "--configfile", str(configfile)],
                skeleton_dir,
                tree,
            )
        else:
            other = "skeleton"
            skeleton_run = (["-s", str(skeleton), *skeleton_config(config, num_problems)], skeleton_dir, REPO)
        compare("nothing done yet", project, skeleton_run, args.repeat, other)
        if args.finished:
            from fake_finished import fake_finished

            for name, (run_args, workdir, tree) in (("project", project), (other, skeleton_run)):
                seconds = fake_finished([*run_args, "-d", str(workdir)], cwd=tree)
                print(f"faked a finished {name} sweep in {seconds:.0f} s")
            compare("finished sweep", project, skeleton_run, args.repeat, other)


if __name__ == "__main__":
    main()
