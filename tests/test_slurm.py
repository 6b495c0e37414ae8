"""The workflow on a real Slurm cluster through profiles/slurm (snakemake-executor-plugin-slurm).

Needs a running cluster with an idle node and two GPUs (real or the fake ones of
tests/slurm/start_cluster.sh); skipped otherwise:

    bash tests/slurm/start_cluster.sh && pytest -m slurm

Every run uses the unmodified profile; only what the CI cluster lacks is added on the command line
(no accounting: status by squeue, no account; quick first status check). What Slurm was asked for is
read from Slurm itself (`scontrol show job`, polled while Snakemake runs), not from Snakemake's log.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from slurm_helpers import (
    CLUSTER_FLAGS,
    LOCAL_PROFILE,
    RUN_TIMEOUT,
    SLURM,
    SLURM_PROFILE,
    SMOKE_RESOURCES,
    TINY_CONFIG,
    SlurmJobs,
    _asked,
    _env,
    _fingerprint,
    _slurm_run,
    _snakemake,
    _tail,
    _wants_one_gpu,
    _workdir,
)

pytestmark = SLURM


# --- tests ---------------------------------------------------------------------------------------


def test_smoke_grid_on_slurm_matches_local_run(tmp_path, prepared_models):
    """The smoke grid through profiles/slurm: every generate, score and evaluate job asks Slurm for
    exactly the config's threads, GPUs, memory and time (config/smoke.yaml's resources block, not the
    profile's), and the accuracy table equals that of a local run of the same config."""
    local = _workdir(tmp_path / "local", TINY_CONFIG, prepared_models)
    proc = _snakemake(local, "--profile", str(LOCAL_PROFILE), "--cores", "2")
    assert proc.returncode == 0, _tail(proc)

    cluster = _workdir(tmp_path / "slurm", TINY_CONFIG, prepared_models)
    with SlurmJobs(cluster) as jobs:
        proc = _slurm_run(cluster)
    assert proc.returncode == 0, _tail(proc)

    generate, score = jobs.of_rule("generate"), jobs.of_rule("score")
    assert len(generate) == 2, [j.get("Comment") for j in jobs.snapshot()]  # one per shard
    assert len(score) == 2, [j.get("Comment") for j in jobs.snapshot()]
    for rule in ("generate", "score", "evaluate"):
        for job in jobs.of_rule(rule):
            assert job["JobState"] == "COMPLETED", job
            assert _asked(job) == SMOKE_RESOURCES[rule], f"{rule} job {job['JobId']}: {job}"
    others = [j for j in jobs.snapshot() if j not in generate + score]
    assert jobs.of_rule("merge") and jobs.of_rule("evaluate"), "merge/evaluate run as Slurm jobs too"
    assert not any(_wants_one_gpu(j) for j in others), [j["Comment"] for j in others if _wants_one_gpu(j)]
    # aggregate and plot are local rules: they never reach Slurm.
    assert not jobs.of_rule("aggregate") and not jobs.of_rule("plot")

    ours = pd.read_csv(cluster / "results" / "tiny" / "accuracy.csv")
    theirs = pd.read_csv(local / "results" / "tiny" / "accuracy.csv")
    assert len(ours) > 0
    pd.testing.assert_frame_equal(ours, theirs)


def test_cancelled_generate_job_is_recomputed_alone(tmp_path, prepared_models):
    """scancel of a running generate job: the run fails, the shard has no completions file, and a
    rerun submits that shard's generate job alone while the other shard's file stays as it was."""
    work = _workdir(tmp_path / "run", TINY_CONFIG, prepared_models)
    # No retries here: a retry would hide the cancellation. --keep-going lets the other shard finish.
    args = ["--until", "generate", "--retries", "0", "--keep-going"]
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(work), "--profile", str(SLURM_PROFILE)]
    cmd += [*CLUSTER_FLAGS, *args]
    cancelled = None
    with SlurmJobs(work, interval=0.2) as jobs:
        proc = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while cancelled is None and proc.poll() is None and time.monotonic() < deadline:
                for job in jobs.of_rule("generate"):
                    start, end = job["Comment"].split("_")[-2:]
                    # Cancel once `sal generate` itself runs: its log file (rule log) exists.
                    if job["JobState"] == "RUNNING" and list(work.glob(f"logs/**/generate/{start}-{end}.log")):
                        subprocess.run(["scancel", job["JobId"]], check=True)
                        cancelled = (job["JobId"], f"{start}-{end}")
                        break
                time.sleep(0.2)
            out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
    assert cancelled is not None, "no generate job seen running"
    assert proc.returncode != 0, f"the run should fail after scancel {cancelled}:\n{out[-3000:]}"
    assert jobs.jobs[int(cancelled[0])]["JobState"] == "CANCELLED"

    shard_files = sorted(work.glob("results/tiny/**/shards/*/completions.parquet"))
    names = [p.parent.name for p in shard_files]
    assert cancelled[1] not in names, f"cancelled shard {cancelled[1]} left a completions file"
    assert len(shard_files) == 1, names  # the other shard completed
    kept = shard_files[0]
    before = _fingerprint(kept)

    # Snakemake itself sees exactly the cancelled shard as work left.
    dry = _snakemake(work, "-n", "--until", "generate", "--quiet", "rules")
    assert dry.returncode == 0, _tail(dry)
    assert re.search(r"^generate\s+1$", dry.stdout, re.M), dry.stdout

    with SlurmJobs(work) as rerun_jobs:
        rerun = _slurm_run(work, "--until", "generate")
    assert rerun.returncode == 0, _tail(rerun)
    first_run = max(jobs.jobs)  # Slurm still lists the first run's jobs: skip them
    new = [j for j in rerun_jobs.of_rule("generate") if int(j["JobId"]) > first_run]
    assert [j["Comment"].split("_")[-2:] for j in new] == [cancelled[1].split("-")], new
    assert (kept.parent.parent / cancelled[1] / "completions.parquet").is_file()
    assert _fingerprint(kept) == before, "the untouched shard was rewritten"


@pytest.mark.parametrize(
    ("mutation", "named"),
    [
        pytest.param("unknown_key: 1\n", "unknown_key", id="unknown-key"),
        pytest.param(
            textwrap.dedent("""\
                approaches:
                  beam:
                    method: beam_search
                    n: 6
                    beam_width: 4
                    max_tokens: 8
                """),
            "beam_width",
            id="n-not-multiple-of-beam-width",
        ),
    ],
)
def test_bad_config_fails_before_any_job_is_submitted(tmp_path, mutation, named):
    config = TINY_CONFIG
    if mutation.startswith("approaches:"):
        config = config[: config.index("approaches:")] + mutation + config[config.index("samplings:") :]
    else:
        config += mutation
    work = _workdir(tmp_path / "bad", config)
    with SlurmJobs(work) as jobs:
        proc = _slurm_run(work, timeout=120)
    assert proc.returncode != 0, _tail(proc)
    assert named in proc.stderr + proc.stdout, _tail(proc)
    assert jobs.snapshot() == [], f"jobs were submitted for a bad config: {jobs.snapshot()}"
    assert not (work / ".snakemake" / "slurm_logs").exists()
