"""Time `snakemake -n` on the hot/cold sweep (~45,000 jobs) against a bare Snakefile of the same shape.

The real workflow validates the config, expands the grid with sal_core and builds JSON params for
every job; the bare one has the same rules, wildcards, paths and job count with nothing else. The
difference is what this workflow adds to DAG building.

The dataset is MATH-500 read from ../shared/data/math500.jsonl (the sweep itself names the Hub
copy, which this machine cannot reach); pass --dataset to use another local copy. Runs only
dry runs: nothing is generated.

    python bench/dag_scale.py [--dataset PATH] [--repeat 2]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from shared_folder import SHARED

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = SHARED / "data" / "math500.jsonl"

BARE_SNAKEFILE = r"""
import json
DATASET = "math500"
MODELS = {models}
RUNS = {runs}
SAMPLINGS = {samplings}
SEEDS = {seeds}
SHARDS = {shards}
PRMS = ["rlhflow-8b"]
RUN = "results/{{dataset}}/{{model}}/{{approach}}/{{sampling}}/seed-{{seed}}"

wildcard_constraints:
    dataset="math500", model="|".join(MODELS), approach="|".join(re.escape(r) for r in RUNS),
    sampling="|".join(re.escape(s) for s in SAMPLINGS), seed=r"\d+", start=r"\d+", end=r"\d+"

def shards(w, name):
    run = f"results/{{w.dataset}}/{{w.model}}/{{w.approach}}/{{w.sampling}}/seed-{{w.seed}}"
    return [f"{{run}}/shards/{{s}}-{{e}}/{{name}}" for s, e in SHARDS]

rule all:
    input:
        [f"results/math500/{{m}}/{{r}}/{{t}}/seed-{{s}}/shards/{{a}}-{{b}}/{{f}}"
         for m in MODELS for r in RUNS for t in SAMPLINGS for s in SEEDS for a, b in SHARDS
         for f in ("completions.parquet", "scores/rlhflow-8b.parquet")],
        "results/math500/accuracy.csv"

rule generate:
    output: RUN + "/shards/{{start}}-{{end}}/completions.parquet"
    params: job=lambda w: json.dumps([w.model, w.approach, w.sampling, w.seed])
    shell: "touch {{output}}"

rule score:
    input: RUN + "/shards/{{start}}-{{end}}/completions.parquet"
    output: RUN + "/shards/{{start}}-{{end}}/scores/{{prm}}.parquet"
    shell: "touch {{output}}"

rule merge:
    input: c=lambda w: shards(w, "completions.parquet"), s=lambda w: shards(w, f"scores/{{w.prm}}.parquet")
    output: RUN + "/merged/{{prm}}.parquet"
    shell: "touch {{output}}"

rule evaluate:
    input: RUN + "/merged/{{prm}}.parquet"
    output: RUN + "/metrics/{{prm}}.parquet"
    shell: "touch {{output}}"

rule aggregate:
    input:
        [f"results/math500/{{m}}/{{r}}/{{t}}/seed-{{s}}/metrics/{{p}}.parquet"
         for m in MODELS for r in RUNS for t in SAMPLINGS for s in SEEDS for p in PRMS]
    output: "results/{{dataset}}/accuracy.csv"
    shell: "touch {{output}}"
"""


def sweep_config(dataset: Path) -> dict:
    config = yaml.safe_load((REPO / "config" / "experiments" / "hot_cold_sweep.yaml").read_text())
    config["dataset"].update(source="local", path=str(dataset))
    return config


def dry_run(snakefile: Path, workdir: Path, configfile: Path | None) -> tuple[float, int]:
    command = [sys.executable, "-m", "snakemake", "-n", "-s", str(snakefile), "-d", str(workdir), "--cores", "1"]
    command += ["--quiet", "rules"]
    if configfile:
        command += ["--configfile", str(configfile)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    elapsed = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"dry run failed:\n{result.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.M)
    return elapsed, int(total[1]) if total else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATA, help="local MATH-500 jsonl")
    parser.add_argument("--repeat", type=int, default=2, help="dry runs of each, best time kept")
    args = parser.parse_args()
    if not args.dataset.is_file():
        sys.exit(f"{args.dataset} not found: pass --dataset with a local MATH-500 jsonl")

    sys.path.insert(0, str(REPO))
    from sal_core.pipeline.prepare_dataset import shard_ranges
    from sal_core.settings.check import check_config

    config = sweep_config(args.dataset)
    grid = check_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    num_problems = sum(1 for line in args.dataset.open() if line.strip())
    with tempfile.TemporaryDirectory() as tmp:
        real_dir, bare_dir = Path(tmp) / "real", Path(tmp) / "bare"
        real_dir.mkdir()
        bare_dir.mkdir()
        configfile = real_dir / "config.yaml"
        configfile.write_text(yaml.safe_dump(config))
        bare = bare_dir / "Snakefile"
        bare.write_text(
            "import re\n"
            + BARE_SNAKEFILE.format(
                models=sorted(grid.models),
                runs=grid.run_ids(),
                samplings=sorted(config["samplings"]),
                seeds=config["seeds"],
                shards=shard_ranges(num_problems, config["dataset"]["shard_size"]),
            )
        )
        real = [dry_run(REPO / "workflow" / "Snakefile", real_dir, configfile) for _ in range(args.repeat)]
        bare_runs = [dry_run(bare, bare_dir, None) for _ in range(args.repeat)]
    real_time, real_jobs = min(real)
    bare_time, bare_jobs = min(bare_runs)
    shard_size = config["dataset"]["shard_size"]
    print(f"hot/cold sweep: {len(grid.runs)} runs, {num_problems} problems in shards of {shard_size}")
    print(f"{'workflow':<10} {'jobs':>8} {'snakemake -n (s)':>18}")
    print(f"{'real':<10} {real_jobs:>8} {real_time:>18.1f}")
    print(f"{'bare':<10} {bare_jobs:>8} {bare_time:>18.1f}")
    print(f"overhead of the real workflow: {real_time - bare_time:+.1f} s ({real_time / bare_time:.2f}x)")


if __name__ == "__main__":
    main()
