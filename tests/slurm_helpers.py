"""Shared by the Slurm tests (test_slurm*.py): whether a cluster answers, the tiny grid's config, a
run folder, Snakemake through the unmodified profile, and what Slurm was asked for, read from
`scontrol show job` while Snakemake runs. Test modules set `pytestmark = SLURM` to skip without a
cluster; their `prepared_models` fixture is in conftest.py."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SLURM_PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "default"
# What the CI cluster needs on top of the profile: no slurmdbd (so no sacct, no accounts).
CLUSTER_FLAGS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
]
RUN_TIMEOUT = 420

# The smoke grid: a tiny random-weight model as policy and PRM, 4 problems in 2 shards, one run.
TINY_CONFIG = """\
dataset:
  name: tiny
  source: builtin
  path: easy_math
  fields: {problem: problem, answer: answer, id: unique_id, level: level}
  limit: 4
  shard_size: 2
models:
  tiny:
    prepare: tiny-random
    backend: transformers
    max_model_len: 512
    batch_size: 16
prms:
  tiny-judge:
    type: rlhflow
    prepare: tiny-random
    batch_size: 8
    max_length: 512
search_prm: tiny-judge
score_prms: [tiny-judge]
approaches:
  bon:
    method: best_of_n
    n: 4
    max_tokens: 24
samplings:
  t0.8:
    temperatures: [0.8]
seeds: [0]
evaluation:
  num_subsamples: 4
  timeout: 5
"""
# What the smoke grid asks of Slurm per rule (threads, gpu, mem_mb, runtime): config/smoke.yaml's own.
SMOKE_RESOURCES = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())["resources"]
TINY_CONFIG += yaml.safe_dump({"resources": SMOKE_RESOURCES})


def _cluster_problem() -> str | None:
    """Why the Slurm tests cannot run here, or None when an idle node with GPUs answers."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm client tools not installed (run: bash tests/slurm/start_cluster.sh)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T %G"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "sinfo does not answer (slurmctld down? run: bash tests/slurm/start_cluster.sh)"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()} (run: bash tests/slurm/start_cluster.sh)"
    nodes = [line.split() for line in out.stdout.splitlines() if line.strip()]
    if not any(fields[0].rstrip("*~#") in ("idle", "mixed") for fields in nodes):
        return f"no idle Slurm node (sinfo: {out.stdout.strip() or 'nothing'})"
    if not any("gpu" in " ".join(fields[1:]) for fields in nodes):
        return "no Slurm node with a gpu GRES (start_cluster.sh configures two fake ones)"
    return None


_PROBLEM = _cluster_problem()
SLURM = [pytest.mark.slurm, pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))]


# --- helpers -------------------------------------------------------------------------------------


def _parse_scontrol(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\S+?)=(\S*)", line))


class SlurmJobs:
    """Records every Slurm job whose working directory is `workdir`, by polling `scontrol show job`.

    Slurm forgets finished jobs after MinJobAge; polling while Snakemake runs keeps each job's last
    known record (requested time, memory, CPUs, GRES, state) however long the run takes.
    """

    def __init__(self, workdir: Path, interval: float = 0.3):
        self.workdir = str(workdir)
        self.interval = interval
        self.jobs: dict[int, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlurmJobs:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> None:
        out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30)
        with self._lock:
            for line in out.stdout.splitlines():
                job = _parse_scontrol(line)
                if job.get("WorkDir") == self.workdir and "JobId" in job:
                    self.jobs[int(job["JobId"])] = job

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return [self.jobs[k] for k in sorted(self.jobs)]

    def of_rule(self, rule: str) -> list[dict[str, str]]:
        """Jobs of one rule: the plugin puts `rule_<name>[_wildcards_<values>]` in the comment."""
        return [j for j in self.snapshot() if re.fullmatch(rf"rule_{rule}(_wildcards_.*)?", j.get("Comment", ""))]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The jobs inherit this environment (sbatch --export=ALL): `sal` and snakemake from this venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _workdir(path: Path, config: str, models: Path | None = None) -> Path:
    """A run folder: the repository's workflow, its own config, results and logs, and (with
    `models`) the prepared models already in resources/models, so no prepare_model job runs."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "workflow").symlink_to(REPO / "workflow")
    (path / "config").mkdir()
    (path / "config" / "config.yaml").write_text(config)
    if models is not None:
        shutil.copytree(models, path / "resources" / "models")
    return path


def _snakemake(workdir: Path, *args: str, timeout: int = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(workdir), *args]
    print("$", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=timeout)
    print(f"  -> rc={proc.returncode} in {time.monotonic() - t0:.0f}s", flush=True)
    return proc


def _slurm_run(workdir: Path, *args: str, timeout: int = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return _snakemake(workdir, "--profile", str(SLURM_PROFILE), *CLUSTER_FLAGS, *args, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess, n: int = 60) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-n:])


def _fingerprint(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def _minutes(limit: str) -> int:
    """Slurm's TimeLimit ([D-]HH:MM:SS) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days) if days else 0) * 1440 + h * 60 + m + (s > 0)


def _mem_mb(value: str) -> int:
    units = {"M": 1, "G": 1024, "T": 1024 * 1024}
    return int(float(value[:-1]) * units[value[-1]]) if value[-1] in units else int(value)


def _gpus(job: dict[str, str]) -> int:
    """The GPUs a job asked for (sbatch --gpus=N shows as TresPerJob=gres:gpu:N)."""
    match = re.search(r"gpu[:=](\d+)\b", job.get("TresPerJob", "") + " " + job.get("TresPerNode", ""))
    return int(match[1]) if match else 0


def _wants_one_gpu(job: dict[str, str]) -> bool:
    return _gpus(job) == 1


def _asked(job: dict[str, str]) -> dict[str, int]:
    """What Slurm was asked for, in the config's resources keys."""
    return {
        "threads": int(job["NumCPUs"]),
        "gpu": _gpus(job),
        "mem_mb": _mem_mb(job["MinMemoryNode"]),
        "runtime": _minutes(job["TimeLimit"]),
    }
