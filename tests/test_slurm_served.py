"""The served grid on a real Slurm cluster: `sal with-servers --sbatch` runs the model and PRM servers as
Slurm jobs around a Snakemake run through profiles/slurm-served (docs/slurm.md, "Model servers next to
the grid"). Needs the cluster of tests/slurm/start_cluster.sh, like tests/test_slurm.py; skipped otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
from slurm_helpers import (
    CLUSTER_FLAGS,
    REPO,
    RUN_TIMEOUT,
    SLURM,
    TINY_CONFIG,
    SlurmJobs,
    _env,
    _mem_mb,
    _tail,
    _wants_one_gpu,
    _workdir,
)

pytestmark = SLURM

SERVED_PROFILE = REPO / "profiles" / "slurm-served"
# The same grid with its model and PRM behind servers (docs/slurm.md, "Model servers next to the grid").
SERVED_CONFIG = (
    TINY_CONFIG.replace("    backend: transformers\n", "    backend: openai\n    served_model: tiny\n").replace(
        "    type: rlhflow\n    prepare: tiny-random\n    batch_size: 8\n    max_length: 512\n",
        "    type: server\n    served_model: tiny-judge\n",
    )
    + "servers:\n  tiny: {service_file: services/tiny.json, wait: 300}\n"
    + "  tiny-judge: {service_file: services/tiny-judge.json, wait: 300}\n"
)


def test_served_grid_on_slurm_with_server_jobs(tmp_path, prepared_models):
    """`sal with-servers --sbatch` around profiles/slurm-served: the servers are Slurm jobs with a GPU,
    generate/score jobs ask for none and reach them through service files, and when the run ends the
    server jobs are cancelled and their service files gone."""
    work = _workdir(tmp_path / "served", SERVED_CONFIG, prepared_models)
    (work / "config" / "in-process.yaml").write_text(TINY_CONFIG)
    serve = ["with-servers", "--sbatch=--gpus=1", "--config", "config/in-process.yaml"]
    serve += ["--serve", "tiny", "--serve", "tiny-judge", "--timeout", "300", "--"]
    grid = [sys.executable, "-m", "snakemake", "--directory", str(work), "--profile", str(SERVED_PROFILE)]
    cmd = [sys.executable, "-m", "sal_core.cli", *serve, *grid, *CLUSTER_FLAGS]
    with SlurmJobs(work) as jobs:
        proc = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, _tail(proc)

    servers = [j for j in jobs.snapshot() if j.get("JobName", "").startswith("sal-server-")]
    assert sorted(j["JobName"] for j in servers) == ["sal-server-tiny", "sal-server-tiny-judge"]
    assert all(_wants_one_gpu(j) and j["JobState"] == "CANCELLED" for j in servers), servers
    clients = jobs.of_rule("generate") + jobs.of_rule("score")
    assert len(clients) == 4, [j.get("Comment") for j in jobs.snapshot()]
    for job in clients:
        assert job["JobState"] == "COMPLETED" and not _wants_one_gpu(job), job
        assert _mem_mb(job["MinMemoryNode"]) == 4000, job  # profiles/slurm-served's first attempt
        assert job["NumCPUs"] == "2", job  # whatever the config says for in-process jobs (1 GPU, 1 CPU)
    assert not list((work / "services").glob("*.json")), "the servers removed their service files"
    assert len(pd.read_csv(work / "results" / "tiny" / "accuracy.csv")) > 0
    assert "loaded PRM tiny-judge" in (work / "logs" / "servers" / "tiny-judge.log").read_text()


def test_time_in_the_queue_does_not_count_against_the_timeout(tmp_path, prepared_models):
    """A server job held in the queue (sbatch --hold) for longer than --timeout, then released: `sal
    with-servers` says it waits in the queue, starts counting when the job runs, and runs its command."""
    work = _workdir(tmp_path / "held", TINY_CONFIG, prepared_models)
    timeout, held_for = 40, 45
    serve = ["with-servers", "--sbatch=--hold", "--config", "config/config.yaml", "--serve", "tiny-judge"]
    cmd = [sys.executable, "-m", "sal_core.cli", *serve, "--timeout", str(timeout), "--", "touch", "ran"]
    with SlurmJobs(work, interval=0.5) as jobs:
        proc = subprocess.Popen(cmd, cwd=work, env=_env(), stderr=subprocess.PIPE, text=True)
        try:
            while not [j for j in jobs.snapshot() if j.get("JobName") == "sal-server-tiny-judge"]:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.5)
            server = jobs.snapshot()[0]
            assert server["JobState"] == "PENDING" and server["Reason"] == "JobHeldUser", server
            time.sleep(held_for)
            assert proc.poll() is None, f"gave up while the job was held: {proc.stderr.read() if proc.stderr else ''}"
            subprocess.run(["scontrol", "release", server["JobId"]], check=True)
            _, err = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert (work / "ran").exists()
    notes = [line for line in err.splitlines() if "waits in the queue" in line]
    assert len(notes) == 1 and f"Slurm job {server['JobId']} PENDING, reason JobHeldUser" in notes[0], err[-3000:]
