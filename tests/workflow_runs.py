"""Driving the workflow through Snakemake's CLI, for the workflow tests (in-process and served).

`workflow_config` is the smoke config cut to three runs (Best-of-N, beam search at n=2, DVTS; one
sampling, one seed, two shards), so a whole run takes about a minute on the tiny random model.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sal_core.missing import planned_jobs as job_lines

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "workflow" / "Snakefile"
RUN = "results/wf/tiny/{approach}/{sampling}/seed-0"


def workflow_config() -> dict:
    """The smoke config, cut to three runs so a module stays quick."""
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["dataset"].update(name="wf", limit=4, shard_size=2)
    config["approaches"]["beam"]["n"] = [2]
    config["samplings"] = {"mix": config["samplings"]["mix"]}
    return config


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir)]
    command += ["--configfile", str(workdir / "config.yaml"), "--cores", "2", "--show-failed-logs", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=900, env=env)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def planned_jobs(workdir: Path, env: dict[str, str] | None = None) -> set[tuple[str, str]]:
    """(rule, first output) of every job a dry run would execute: one `Job N: rule output` line per
    job (the rules' message), and Snakemake's own block for `all`, which has no output."""
    result = snakemake(workdir, "-n", env=env)
    out = result.stdout + result.stderr  # Snakemake logs jobs on stderr
    assert "Building DAG of jobs" in out, out[-2000:]
    jobs = set(job_lines(out))
    jobs |= {(rule, "") for rule in re.findall(r"^(?:local)?rule (\w+):$", out, re.M)}
    return jobs


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_workdir(workdir: Path, config: dict, tiny_model_path: Path) -> Path:
    """A working folder with `config` and the prepared tiny model (shared, not rebuilt)."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(workdir, config)
    shutil.copytree(tiny_model_path, workdir / "resources" / "models" / "tiny-random")
    return workdir


def shard_states(workdir: Path) -> dict[str, tuple[str, int]]:
    """(hash, mtime) of every shard file (completions and scores) under results/."""
    files = sorted((workdir / "results").glob("**/shards/**/*.parquet"))
    return {str(p.relative_to(workdir)): (digest(p), p.stat().st_mtime_ns) for p in files}
