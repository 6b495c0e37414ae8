"""Requeue and preemption of a running `generate` job on the local Slurm cluster (tests/slurm: Slurm's
default JobRequeue=1, a higher-priority partition `urgent` with PreemptMode=REQUEUE). Slurm kills the
running job and starts it again under the same job id; the executor plugin, polling squeue, sees it
pending and running again and waits. The run finishes, the shard is complete (no temporary file of the
killed attempt is left), and a dry run lists nothing. Needs the cluster, like tests/test_slurm.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from slurm_helpers import (
    CLUSTER_FLAGS,
    RUN_TIMEOUT,
    SLURM,
    SLURM_PROFILE,
    TINY_CONFIG,
    SlurmJobs,
    _env,
    _snakemake,
    _tail,
    _workdir,
)

from sal_core.tables import read_table

pytestmark = SLURM


def run_and_interrupt(
    work: Path, interrupt: Callable[[dict], None]
) -> tuple[subprocess.CompletedProcess, dict, SlurmJobs]:
    """The grid's generate jobs through profiles/slurm (no retries: Snakemake must not resubmit);
    `interrupt(job)` once a generate job runs `sal generate` (its rule log exists)."""
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(work), "--profile", str(SLURM_PROFILE)]
    cmd += [*CLUSTER_FLAGS, "--until", "generate", "--retries", "0"]
    hit: dict = {}
    with SlurmJobs(work, interval=0.2) as jobs:
        proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while not hit and proc.poll() is None and time.monotonic() < deadline:
                for job in jobs.of_rule("generate"):
                    start, end = job["Comment"].split("_")[-2:]
                    if job["JobState"] == "RUNNING" and list(work.glob(f"logs/**/generate/{start}-{end}.log")):
                        interrupt(job)
                        hit.update(job=job["JobId"], shard=f"{start}-{end}")
                        break
                time.sleep(0.2)
            out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, ""), hit, jobs


def check_finished(work: Path, proc: subprocess.CompletedProcess, hit: dict, jobs: SlurmJobs) -> None:
    assert hit, "no generate job seen running"
    assert proc.returncode == 0, _tail(proc)
    record = jobs.jobs[int(hit["job"])]
    assert int(record.get("Restarts", "0")) >= 1 and record["JobState"] == "COMPLETED", record
    shards = sorted(work.glob("results/tiny/**/shards/*/completions.parquet"))
    assert [p.parent.name for p in shards] == ["0-2", "2-4"]
    for shard in shards:
        assert len(read_table(shard)) == 2  # complete
    assert not [p for p in (work / "results").rglob("*") if p.name.endswith(".tmp")], "a killed attempt's temp file"
    dry = _snakemake(work, "-n", "--until", "generate")
    assert dry.returncode == 0 and re.search(r"^total\s+0$", dry.stdout + dry.stderr, re.M), _tail(dry)


def test_a_requeued_generate_job_finishes_the_run(tmp_path, prepared_models):
    work = _workdir(tmp_path / "requeue", TINY_CONFIG, prepared_models)
    proc, hit, jobs = run_and_interrupt(
        work, lambda job: subprocess.run(["scontrol", "requeue", job["JobId"]], check=True)
    )
    check_finished(work, proc, hit, jobs)


def test_a_preempted_generate_job_is_requeued_and_finishes_the_run(tmp_path, prepared_models):
    work = _workdir(tmp_path / "preempt", TINY_CONFIG, prepared_models)
    urgent = ["sbatch", "--parsable", "--partition=urgent", "--exclusive", "--job-name=urgent", "--output=/dev/null"]
    urgent.append("--wrap=sleep 3")
    submitted: list[str] = []

    def preempt(_job: dict) -> None:
        submitted.append(subprocess.run(urgent, check=True, capture_output=True, text=True).stdout.strip())

    proc, hit, jobs = run_and_interrupt(work, preempt)
    check_finished(work, proc, hit, jobs)
