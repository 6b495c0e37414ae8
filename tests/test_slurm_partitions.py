"""Slurm partitions' limits (tests/slurm_helpers.py; needs the cluster of tests/slurm/start_cluster.sh):
retries ask for more memory and time up to a partition's limits, and a first request above them
stops the run in one line before any job is submitted."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml
from slurm_helpers import (
    CLUSTER_FLAGS,
    RUN_TIMEOUT,
    SLURM,
    SLURM_PROFILE,
    SMOKE_RESOURCES,
    TINY_CONFIG,
    SlurmJobs,
    _asked,
    _env,
    _slurm_run,
    _tail,
    _workdir,
)

pytestmark = SLURM


@pytest.fixture(scope="module")
def short_partition():
    """A partition of the CI node with limits (25 minutes, 5000 MB per node), made for these tests
    only (`scontrol create`; gone again afterwards and after a slurmctld restart)."""
    name = f"saltest{os.getpid()}"
    node = subprocess.run(["sinfo", "-h", "-o", "%N", "-p", "debug"], capture_output=True, text=True).stdout.strip()
    made = subprocess.run(
        [
            "scontrol",
            "create",
            f"PartitionName={name}",
            f"Nodes={node}",
            "MaxTime=25",
            "MaxMemPerNode=5000",
            "State=UP",
        ],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot create a test partition: {made.stderr.strip()}")
    yield name
    subprocess.run(["scontrol", "delete", f"PartitionName={name}"], check=False)


def _in_partition(name: str) -> list[str]:
    """A site's default-resources (docs/slurm.md): its partition, the profile's growing defaults kept."""
    return ["--default-resources", f"slurm_partition={name}", "mem_mb=2000*attempt", "runtime=30*attempt"]


def test_retries_ask_for_more_time_and_memory_up_to_the_partitions_limits(tmp_path, prepared_models, short_partition):
    """A generate job that fails twice (cancelled by this test the moment it is submitted) is
    resubmitted by the profile (retries: 2) with the config's memory and time x the attempt, capped at
    the partition's limits (25 min, 5000 MB), and the same CPUs and GPU each time."""
    config = TINY_CONFIG.replace("limit: 4", "limit: 2")  # one shard, one generate job
    work = _workdir(tmp_path / "retry", config, prepared_models)
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(work), "--profile", str(SLURM_PROFILE)]
    cmd += [*CLUSTER_FLAGS, *_in_partition(short_partition), "--until", "generate"]
    cancelled: list[str] = []
    with SlurmJobs(work, interval=0.2) as jobs:
        proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                for job in jobs.of_rule("generate"):
                    if (
                        len(cancelled) < 2
                        and job["JobId"] not in cancelled
                        and job["JobState"] in ("PENDING", "RUNNING")
                    ):
                        subprocess.run(["scancel", job["JobId"]], check=True)
                        cancelled.append(job["JobId"])
                time.sleep(0.2)
            out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out[-3000:]
    submitted = jobs.of_rule("generate")
    assert [j["JobState"] for j in submitted] == ["CANCELLED", "CANCELLED", "COMPLETED"], submitted
    assert all(j["Partition"] == short_partition for j in submitted), submitted
    first = SMOKE_RESOURCES["generate"]
    assert [_asked(j)["mem_mb"] for j in submitted] == [first["mem_mb"], 2 * first["mem_mb"], 5000]
    assert [_asked(j)["runtime"] for j in submitted] == [first["runtime"], 2 * first["runtime"], 25]
    assert all((_asked(j)["threads"], _asked(j)["gpu"]) == (first["threads"], first["gpu"]) for j in submitted)


def test_a_request_above_the_partitions_limit_stops_the_run_before_any_job(tmp_path, prepared_models, short_partition):
    """generate's runtime of 30 minutes on a partition allowing 25: one line naming the setting, and
    Slurm never sees a job."""
    config = TINY_CONFIG.replace("runtime: 10", "runtime: 30", 1)
    assert yaml.safe_load(config)["resources"]["evaluate"]["runtime"] == 30  # the first, alphabetically
    work = _workdir(tmp_path / "too-long", config, prepared_models)
    with SlurmJobs(work) as jobs:
        proc = _slurm_run(work, *_in_partition(short_partition), timeout=120)
    assert proc.returncode != 0, _tail(proc)
    assert f"resources.evaluate.runtime: 30 minutes is more than partition {short_partition} allows" in proc.stderr
    assert "Traceback" not in proc.stderr, _tail(proc)
    assert jobs.snapshot() == [], f"jobs were submitted: {jobs.snapshot()}"
