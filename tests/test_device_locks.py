"""Local GPU allocation (sal_core.device_locks, sal_core.job_devices) with real processes and a faked
device list: the visible GPUs are CUDA_VISIBLE_DEVICES, so no GPU (and no CUDA) is needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sal_core.device_locks import claim_gpus, local_gpu_count, try_claim, visible_gpus
from sal_core.errors import ConfigError
from sal_core.gpu_info import FIELDS
from sal_core.job_devices import grid_gpus, job_gpus, policy_only, shares_policy_gpu
from sal_core.settings.jobs import ModelSettings, PRMSettings

ROOT = Path(__file__).resolve().parents[1]

#: a job's start as a `sal` step does it: take the GPUs, say which, hold them until killed
HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from sal_core.device_locks import claim_gpus
    claim_gpus(int(sys.argv[1]), "test job", "models.m.tensor_parallel_size", wait=sys.argv[2] == "wait")
    print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    time.sleep(120)
    """
)


def fake_env(locks: Path, gpus: str = "0,1") -> dict[str, str]:
    """This machine with `gpus` visible, lock files under `locks`, not a Slurm job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "CUDA_VISIBLE_DEVICES": gpus, "SAL_GPU_LOCKS": str(locks), "PYTHONPATH": str(ROOT)}


def start(env: dict[str, str], count: int = 1, wait: bool = True) -> subprocess.Popen:
    argv = [sys.executable, "-c", HOLDER, str(count), "wait" if wait else "nowait"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def gpus_of(process: subprocess.Popen) -> str:
    line = process.stdout.readline().strip()
    assert line or process.poll() is None, process.stderr.read()
    return line


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def test_concurrent_jobs_get_disjoint_gpus_and_a_killed_jobs_gpu_is_free_again(tmp_path: Path, processes) -> None:
    env = fake_env(tmp_path)
    first, second = start(env), start(env)
    processes += [first, second]
    assert {gpus_of(first), gpus_of(second)} == {"0", "1"}
    # both GPUs held: a third job waits ...
    third = start(env)
    processes.append(third)
    time.sleep(3)
    assert third.poll() is None
    # ... until one of the holders is killed outright: the kernel drops its lock
    held_by_first = "0" if (tmp_path / "gpu-0.lock").read_text().startswith(f"pid {first.pid}") else "1"
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert gpus_of(third) == held_by_first


def test_no_free_gpu_without_waiting_is_one_line_naming_the_holder(tmp_path: Path, processes) -> None:
    env = fake_env(tmp_path, "3")
    holder = start(env)
    processes.append(holder)
    assert gpus_of(holder) == "3"
    refused = subprocess.run(
        [sys.executable, "-c", HOLDER, "1", "nowait"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert "models.m.tensor_parallel_size" in last and f"GPU 3: pid {holder.pid}: test job" in last


def test_a_job_holds_all_its_gpus_in_its_own_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAL_GPU_LOCKS", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    claim = claim_gpus(2, "two", "k")
    try:
        assert claim.gpus == ["4", "5"] and os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"
    finally:
        claim.release()


def test_more_gpus_than_the_machine_shows_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAL_GPU_LOCKS", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ConfigError, match=r"models.m.tensor_parallel_size: needs 4 GPUs, this machine shows 2"):
        claim_gpus(4, "big", "models.m.tensor_parallel_size")


def test_a_job_without_gpu_work_sees_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAL_GPU_LOCKS", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    claim_gpus(0, "client", "model.backend")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and visible_gpus() == []


def test_under_slurm_nothing_is_locked_and_too_few_gpus_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAL_GPU_LOCKS", str(tmp_path / "locks"))
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert claim_gpus(1, "slurm job", "k").gpus == ["2"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2" and not (tmp_path / "locks").exists()
    with pytest.raises(ConfigError, match=r"prm.device: needs 2 GPUs, this Slurm job has 1"):
        claim_gpus(2, "slurm job", "prm.device")


def test_tensor_parallelism_is_one_gpu_unless_set(tmp_path: Path) -> None:
    vllm = ModelSettings(name="m", path=str(tmp_path), backend="vllm")
    assert job_gpus(vllm, None) == (1, "models.m.tensor_parallel_size")
    split = ModelSettings(name="m", path=str(tmp_path), backend="vllm", tensor_parallel_size=4)
    assert job_gpus(split, None) == (4, "models.m.tensor_parallel_size")
    on_cpu = ModelSettings(name="m", path=str(tmp_path), device="cpu")
    assert job_gpus(on_cpu, None)[0] == 0
    served = ModelSettings(name="m", path=str(tmp_path), backend="openai", served_model="m")
    assert job_gpus(served, None)[0] == 0


def test_a_prm_on_its_own_gpu_makes_the_job_hold_two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = ModelSettings(name="m", path=str(tmp_path), backend="vllm")
    own = PRMSettings(name="p", type="rlhflow", path=str(tmp_path), device="cuda:1")
    beside = PRMSettings(name="p", type="rlhflow", path=str(tmp_path))
    assert job_gpus(policy, own) == (2, "prms.p.device") and not shares_policy_gpu(policy, own)
    assert job_gpus(policy, beside) == (1, "models.m.tensor_parallel_size") and shares_policy_gpu(policy, beside)
    # vLLM's engine starts seeing the policy's GPU only; the PRM's is back for the job after
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    with policy_only(policy):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"


# run by `sal with-servers` once its servers answer: each server's CUDA_VISIBLE_DEVICES, read from /proc
SERVER_GPUS = """
import json, pathlib, sys
for name in ("tiny", "judge"):
    record = json.load(open(f"{sys.argv[1]}/{name}.json"))
    environ = pathlib.Path(f"/proc/{record['pid']}/environ").read_bytes().split(b"\\0")
    print(name, [v.decode().split("=", 1)[1] for v in environ if v.startswith(b"CUDA_VISIBLE_DEVICES=")])
"""


def test_with_servers_gives_each_local_server_its_own_gpu(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    entries = {
        "models": {"tiny": {"path": str(tiny_model_path), "max_model_len": 256}},
        "prms": {"judge": {"type": "rlhflow", "path": str(tiny_model_path)}},
    }  # device auto: a GPU each (torch's CPU build here ignores CUDA_VISIBLE_DEVICES and runs on the CPU)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(entries))
    services, locks = tmp_path / "services", tmp_path / "locks"
    argv = [sys.executable, "-m", "sal_core.cli", "with-servers", "--config", str(tmp_path / "config.yaml")]
    argv += ["--serve", "tiny", "--serve", "judge", "--services", str(services), "--logs", str(tmp_path / "logs")]
    argv += ["--", sys.executable, "-c", SERVER_GPUS, str(services)]
    env = {**fake_env(locks, "0,1"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert sorted(seen.values()) == ["['0']", "['1']"], seen  # one GPU each, not the same
    # stopped with the run: both GPUs free again
    monkeypatch.setenv("SAL_GPU_LOCKS", str(locks))
    claim, busy = try_claim(2, ["0", "1"], "after")
    assert claim is not None and claim.gpus == ["0", "1"] and not busy
    claim.release()


def test_the_local_gpu_count_is_declared_or_all_shown_and_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAL_GPU_LOCKS", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert local_gpu_count(None) == 3 and local_gpu_count(2) == 2
    server, _ = try_claim(1, ["0"], "a server of sal with-servers")
    assert local_gpu_count(None) == 2  # the jobs of the run it wraps get the two others
    server.release()
    with pytest.raises(ConfigError, match=r"resources gpu=4: this machine shows 3 GPU\(s\) .* declare at most 3"):
        local_gpu_count(4)


def test_declaring_more_gpus_than_shown_stops_the_run_before_any_job(tmp_path: Path, tiny_model_path: Path) -> None:
    from tests.workflow_runs import new_workdir, snakemake, workflow_config

    work = new_workdir(tmp_path / "wf", workflow_config(), tiny_model_path)
    env = fake_env(tmp_path / "locks", "0")
    result = snakemake(work, "-n", "--resources", "gpu=2", check=False, env=env)
    assert result.returncode != 0
    assert "invalid configuration: resources gpu=2: this machine shows 1 GPU(s) (0;" in result.stdout + result.stderr


def test_each_rule_asks_for_the_gpus_its_grid_needs(tmp_path: Path) -> None:
    import yaml

    from sal_core.settings.grid import build_grid

    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config["dataset"]["limit"] = 2
    assert grid_gpus(build_grid(config)) == {"generate": 1, "score": 1}  # device auto: a GPU where there is one
    for entry in (*config["models"].values(), *config["prms"].values()):
        entry["device"] = "cpu"
    assert grid_gpus(build_grid(config)) == {"generate": 0, "score": 0}
    guide = config["search_prm"]
    config["prms"][guide]["device"] = "cuda:1"  # beam search's PRM on a GPU of its own: two per job
    assert grid_gpus(build_grid(config))["generate"] == 2


def test_a_step_in_a_longer_process_gives_its_gpus_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sal_core.job_devices import job_gpus_held

    monkeypatch.setenv("SAL_GPU_LOCKS", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    two = ModelSettings(name="m", path=str(tmp_path), backend="vllm", tensor_parallel_size=2)
    with job_gpus_held(two, None) as claim:
        assert claim.gpus == ["0", "1"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
        other, busy = try_claim(1, ["0", "1", "2"], "another step")
        assert other.gpus == ["2"] and busy == ["0", "1"]  # only the third is free
        other.release()
    # back to the next step (or a subprocess a test starts): all three free, the environment as it was
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"
    again, busy = try_claim(3, ["0", "1", "2"], "the next step")
    assert again is not None and not busy
    again.release()


def test_a_score_step_takes_a_free_gpu_before_loading_its_prm(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sal_core.tables import write_table_atomic

    shard = write_table_atomic(
        [{"problem_id": "p0", "problem": "1+1?", "answer": "2", "level": None, "completions": ["2\n\n$\\boxed{2}$"]}],
        tmp_path / "completions.parquet",
    )
    monkeypatch.setenv("SAL_GPU_LOCKS", str(tmp_path / "locks"))
    taken, _ = try_claim(1, ["0"], "another job")  # GPU 0 is another job's
    prm = f'{{"name": "judge", "type": "rlhflow", "path": "{tiny_model_path}"}}'  # device auto: one GPU
    argv = [sys.executable, "-m", "sal_core.cli", "score", "--completions", str(shard), "--prm", prm]
    argv += ["--out", str(tmp_path / "scores.parquet")]
    env = {**fake_env(tmp_path / "locks", "0,1"), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    finally:
        taken.release()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GPUs: 1 (CUDA_VISIBLE_DEVICES=1)" in done.stderr  # torch's CPU build here then runs it on the CPU


def test_a_generate_job_split_over_more_gpus_than_shown_is_one_line_before_any_model(tmp_path: Path) -> None:
    import json

    from sal_core.tables import write_table_atomic

    problems = write_table_atomic(
        [{"problem_id": "p0", "problem": "1+1?", "answer": "2", "level": None}], tmp_path / "problems.parquet"
    )
    model = {"name": "big", "path": str(tmp_path), "backend": "vllm", "tensor_parallel_size": 4}
    job = json.dumps({"model": model, "search": {"method": "best_of_n", "n": 1}})
    argv = [sys.executable, "-m", "sal_core.cli", "generate", "--problems", str(problems), "--start", "0"]
    argv += ["--end", "1", "--job", job, "--out", str(tmp_path / "completions.parquet")]
    done = subprocess.run(argv, capture_output=True, text=True, env=fake_env(tmp_path / "locks"), timeout=120)
    assert done.returncode != 0 and not (tmp_path / "completions.parquet").exists()
    last = done.stderr.strip().splitlines()[-1]
    assert "models.big.tensor_parallel_size: needs 4 GPUs, this machine shows 2 (0, 1;" in last, done.stderr
    assert "Traceback" not in done.stderr


#: a job whose engine process (forked, as vLLM forks its engine core) outlives it
FORKING = textwrap.dedent(
    """
    import os, time
    from sal_core.device_locks import claim_gpus
    claim_gpus(1, "forking job", "k")
    engine = os.fork()
    if engine == 0:
        time.sleep(120)
        os._exit(0)
    print(engine, flush=True)
    time.sleep(120)
    """
)


def test_a_gpu_stays_held_while_a_killed_jobs_engine_process_lives(tmp_path: Path, processes) -> None:
    env = fake_env(tmp_path, "0")
    job = subprocess.Popen([sys.executable, "-c", FORKING], env=env, stdout=subprocess.PIPE, text=True)
    processes.append(job)
    engine = int(job.stdout.readline())
    job.send_signal(signal.SIGKILL)
    job.wait()
    probe = [sys.executable, "-c", HOLDER, "1", "nowait"]
    assert subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode != 0  # the engine holds it
    os.kill(engine, signal.SIGKILL)  # the kernel drops the lock with the last descriptor
    late = start(env)
    processes.append(late)
    assert gpus_of(late) == "0"


def test_without_cuda_visible_devices_the_gpus_are_nvidia_smis_in_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sal_core.device_locks import visible_env

    fake = tmp_path / "bin" / "nvidia-smi"  # answers as the real one does to this query, on a 2-GPU machine
    fake.parent.mkdir()
    query = f"--query-gpu={','.join(FIELDS)} --format=csv,noheader,nounits"
    rows = "".join(f"{i}, GPU-{i}, NVIDIA H100, 9.0, 81559, 81000, 580.65.06\\n" for i in range(2))
    fake.write_text(f'#!/bin/sh\n[ "$1 $2" = "{query}" ] && printf "{rows}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    assert visible_gpus() == ["0", "1"]
    assert visible_env(["1"]) == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the user's own ids keep the user's order
    assert visible_env(["1"]) == {"CUDA_VISIBLE_DEVICES": "1"}


def test_a_local_run_counts_only_free_gpus_and_its_jobs_take_those(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.workflow_runs import RUN, new_workdir, snakemake, workflow_config

    work = new_workdir(tmp_path / "wf", workflow_config(), tiny_model_path)
    locks = tmp_path / "locks"
    monkeypatch.setenv("SAL_GPU_LOCKS", str(locks))
    server, _ = try_claim(1, ["0"], "a server")  # GPU 0 busy: Snakemake counts one GPU, both jobs take GPU 1
    shards = [f"{RUN.format(approach='bon', sampling='mix')}/shards/{s}/completions.parquet" for s in ("0-2", "2-4")]
    try:
        run = snakemake(work, *shards, env={**fake_env(locks, "0,1"), "OMP_NUM_THREADS": "1"})
    finally:
        server.release()
    assert 'Provided resources: gpu=Resource("gpu", 1)' in run.stdout + run.stderr
    logs = sorted((work / "logs").glob("**/generate/*.log"))
    assert len(logs) == 2
    for log in logs:  # one at a time, as counted: neither waited for the other
        assert "GPUs: 1 (CUDA_VISIBLE_DEVICES=1)" in log.read_text() and "waiting for" not in log.read_text()


def test_with_servers_names_the_holder_of_a_gpu_its_server_needs(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    entries = {"models": {"tiny": {"path": str(tiny_model_path)}}, "prms": {"judge": {"type": "rlhflow"}}}
    entries["prms"]["judge"]["path"] = str(tiny_model_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(entries))
    locks = tmp_path / "locks"
    monkeypatch.setenv("SAL_GPU_LOCKS", str(locks))
    taken, _ = try_claim(1, ["0"], "another run's job")
    argv = [sys.executable, "-m", "sal_core.cli", "with-servers", "--config", str(tmp_path / "config.yaml")]
    argv += ["--serve", "judge", "--services", str(tmp_path / "services"), "--logs", str(tmp_path / "logs")]
    try:
        done = subprocess.run(
            [*argv, "--", "true"], capture_output=True, text=True, env=fake_env(locks, "0"), timeout=120
        )
    finally:
        taken.release()
    assert done.returncode != 0 and not (tmp_path / "logs" / "judge.log").exists()  # no server started
    last = done.stderr.strip().splitlines()[-1]
    assert f"prms.judge.device: needs 1 free GPU(s), 1 of the 1 are held (GPU 0: pid {os.getpid()}" in last


def test_a_verifier_prm_needs_no_gpu() -> None:
    """The verifier has no model: a job guided or scored by it holds no GPU for it."""
    from sal_core.job_devices import prm_gpus

    assert prm_gpus(PRMSettings(name="check", type="verifier"))[0] == 0
    assert prm_gpus(PRMSettings(name="judge", type="rlhflow", path="x"))[0] == 1
