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

`--baseline REV` also times an older revision of the workflow and sal_core (`git archive REV`, run
with its own sal_core first on PYTHONPATH) in the same alternation, so a change's cost is measured
side by side on the same machine and load. `--snakemake-args "..."` adds flags to every dry run,
e.g. `"--profile {root}/profiles/slurm --slurm-no-account"` for the cluster profile's path: `{root}`
is the baseline's tree for the baseline (its own profile), this repository for the others.

Reads ../shared (bench/shared_folder.py): the skeleton and MATH-500 (`data/math500.jsonl`; the
sweep names the Hub copy, which this machine cannot reach). Runs only dry runs.

    python bench/dag_scale.py [--repeat 2] [--finished] [--dataset PATH] [--baseline REV] [--snakemake-args ARGS]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
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


def sweep_config(dataset: Path, root: Path = REPO) -> dict:
    config = yaml.safe_load((root / "config" / "experiments" / "hot_cold_sweep.yaml").read_text())
    config["dataset"].update(source="local", path=str(dataset))
    return config


def skeleton_config(config: dict, num_problems: int) -> list[str]:
    """The skeleton's `--config` for the sweep's shape (it has the same three approaches)."""
    shards = -(-num_problems // config["dataset"]["shard_size"])
    sizes = dict(models=len(config["models"]), samplings=len(config["samplings"]), seeds=len(config["seeds"]))
    return ["--config", *(f"{key}={value}" for key, value in {**sizes, "shards": shards}.items())]


@dataclass
class Run:
    """One workflow to dry-run: its arguments, folder and, for a baseline, its own sal_core."""

    args: list[str]
    workdir: Path
    pythonpath: Path | None = None


def dry_run(run: Run) -> Timing:
    """One `snakemake -n` in its own process: wall time, its max RSS (os.wait4), the job total."""
    command = [sys.executable, "-m", "snakemake", *FLAGS, "-d", str(run.workdir), *run.args]
    env = dict(os.environ)
    if run.pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(run.pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    log = run.workdir / "dry_run.log"
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if process.returncode:
        sys.exit(f"dry run failed: {' '.join(command)}\n{text[-3000:]}")
    total = re.search(r"^total\s+(\d+)", text, re.M)
    cpu = usage.ru_utime + usage.ru_stime
    return Timing(elapsed, cpu, usage.ru_maxrss / 1024, int(total[1]) if total else 0, "Nothing to be done" in text)


def compare(label: str, runs: dict[str, Run], repeat: int) -> None:
    """Alternate the runs' dry runs; print every try, then the best of each and the ratios to the skeleton."""
    print(f"\n{label}: load average {os.getloadavg()[0]:.2f} before")
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    for attempt in range(repeat):
        for name, run in runs.items():
            timing = dry_run(run)
            timings[name].append(timing)
            print(
                f"  try {attempt + 1} {name:<9} {timing.seconds:7.1f} s wall {timing.cpu_seconds:7.1f} s CPU"
                f"  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    best = {name: min(ts, key=lambda t: t.seconds) for name, ts in timings.items()}
    cpu = {name: min(t.cpu_seconds for t in ts) for name, ts in timings.items()}
    print(f"{'':<10} {'jobs':>8} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'nothing to do':>14}")
    for name, timing in best.items():
        print(
            f"{name:<10} {timing.jobs:>8} {timing.seconds:>8.1f} {cpu[name]:>8.1f} {timing.peak_mb:>8.0f}"
            f" {timing.nothing_to_do!s:>14}"
        )
    for name in (n for n in runs if n != "skeleton" and "skeleton" in runs):
        wall_ratio = best[name].seconds / best["skeleton"].seconds
        print(f"ratio {name} / skeleton: {wall_ratio:.2f}x wall, {cpu[name] / cpu['skeleton']:.2f}x CPU")
    if "baseline" in runs:
        wall_ratio = best["project"].seconds / best["baseline"].seconds
        print(f"ratio project / baseline: {wall_ratio:.2f}x wall, {cpu['project'] / cpu['baseline']:.2f}x CPU")


def baseline_tree(revision: str, folder: Path) -> Path:
    """The workflow, sal_core and configs of `revision`, unpacked into `folder` (git archive)."""
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "workflow", "sal_core", "config", "profiles"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="local MATH-500 jsonl (default ../shared/data/math500.jsonl)")
    parser.add_argument("--repeat", type=int, default=2, help="dry runs of each, alternating; best time kept")
    parser.add_argument("--finished", action="store_true", help="also time the dry run of a finished sweep")
    parser.add_argument("--baseline", metavar="REV", help="also time this git revision's workflow, side by side")
    parser.add_argument("--snakemake-args", default="", help="flags added to every dry run (one string)")
    parser.add_argument("--no-skeleton", action="store_true", help="with --baseline: time only the two revisions")
    args = parser.parse_args()
    dataset = args.dataset or shared_file("data/math500.jsonl")
    skeleton = shared_file("bench/dag_skeleton.smk")
    config = sweep_config(dataset)
    extra = [arg.replace("{root}", str(REPO)) for arg in shlex.split(args.snakemake_args)]
    num_problems = sum(1 for line in dataset.open() if line.strip())
    print(f"hot/cold sweep: {num_problems} problems in shards of {config['dataset']['shard_size']}; flags {FLAGS}")
    with tempfile.TemporaryDirectory(prefix="dag_scale.") as tmp:
        folders = {name: Path(tmp) / name for name in ("project", "baseline", "skeleton")}
        configfile = Path(tmp) / "config.yaml"
        configfile.write_text(yaml.safe_dump(config))
        runs = {"project": Run(["-s", str(SNAKEFILE), "--configfile", str(configfile), *extra], folders["project"])}
        if args.baseline:
            tree = baseline_tree(args.baseline, Path(tmp) / f"tree-{args.baseline.replace('/', '_')}")
            its_config = Path(tmp) / "baseline.yaml"  # the sweep as that revision states it (its schema)
            its_config.write_text(yaml.safe_dump(sweep_config(dataset, tree)))
            its_extra = [arg.replace("{root}", str(tree)) for arg in shlex.split(args.snakemake_args)]
            snakefile = tree / "workflow" / "Snakefile"
            runs["baseline"] = Run(
                ["-s", str(snakefile), "--configfile", str(its_config), *its_extra], folders["baseline"], tree
            )
        if not args.no_skeleton:
            runs["skeleton"] = Run(
                ["-s", str(skeleton), *skeleton_config(config, num_problems), *extra], folders["skeleton"]
            )
        for run in runs.values():
            run.workdir.mkdir()
        compare("nothing done yet", runs, args.repeat)
        if args.finished:
            from fake_finished import fake_finished

            for name, run in runs.items():
                seconds = fake_finished([*run.args, "-d", str(run.workdir)], cwd=REPO)
                print(f"faked a finished {name} sweep in {seconds:.0f} s")
            compare("finished sweep", runs, args.repeat)


if __name__ == "__main__":
    main()
