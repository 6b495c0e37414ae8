"""The workflow on a real Slurm cluster through profiles/slurm (snakemake-executor-plugin-slurm).

Needs a running cluster with an idle node and two GPUs (real or the fake ones of
tests/slurm/start_cluster.sh); skipped otherwise:

    bash tests/slurm/start_cluster.sh && pytest -m slurm

Every run uses the unmodified profile; only what the CI cluster lacks is added on the command line
(no accounting: status by squeue, no account; quick first status check). What Slurm was asked for is
read from Slurm itself (`scontrol show job`, polled while Snakemake runs), not from Snakemake's log.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
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
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))]


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


@pytest.fixture(scope="module")
def prepared_models(tmp_path_factory) -> Path:
    """resources/models/tiny-random built once by the real `sal prepare-model` step (saves a job and
    half a minute of model building per run)."""
    models = tmp_path_factory.mktemp("prepared") / "models"
    cmd = ["sal", "prepare-model", "--source", "tiny-random", "--out", str(models / "tiny-random")]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"sal prepare-model failed:\n{proc.stdout}\n{proc.stderr}")
    return models


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
