"""The workflow with its model behind `sal serve` and its PRM behind `sal serve-prm`, through Snakemake's CLI.

The cut-down smoke grid runs once against two real servers on localhost (API key required) and must
give the in-process run's accuracy table byte for byte. Then: moving a server (url, service file,
timeout, ...) reruns nothing, while a changed `served_model` or `revision` reruns exactly the jobs
that use it; the API key is written nowhere; a server killed in the middle of a generate job fails
that job naming the server, leaves no shard file, and the rerun computes only that shard; a PRM
server answering HTTP 500 fails the score job naming it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_faults import broken_server
from workflow_runs import RUN, new_workdir, planned_jobs, shard_states, snakemake, workflow_config, write_config

from sal_core.backends.http_client import RUN_KEY_ENV
from sal_core.serving.around import ServerSpec, server_specs
from sal_core.serving.launch import spawn, stop_server, wait_for_server

KEY_ENV = "SAL_TEST_SERVE_KEY"
SECRET = "sk-test-5f0c9e1d7a2b"
# the judge's location names no key variable: its clients send the run's key, as under `sal with-servers`
RUN_SECRET = "sk-run-0b7e4c2d9a1f"
ENV = {
    **os.environ,
    KEY_ENV: SECRET,
    RUN_KEY_ENV: RUN_SECRET,
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
NAMES = ("tiny", "tiny-judge")
BON = RUN.format(approach="bon", sampling="mix")


def served_config(services: Path, **changes: dict) -> dict:
    """The cut-down smoke grid with its model (backend openai) and PRM (type server) behind servers
    whose service files are in `services`; `changes[name]` updates that server's location."""
    config = workflow_config()
    model = config["models"]["tiny"]
    config["models"]["tiny"] = {"prepare": model["prepare"], "backend": "openai", "served_model": "tiny"}
    config["models"]["tiny"]["max_model_len"] = model["max_model_len"]
    config["prms"]["tiny-judge"] = {"type": "server", "served_model": "tiny-judge"}
    config["servers"] = {
        name: {"service_file": str(services / f"{name}.json"), "retries": 1}
        | ({"api_key_env": KEY_ENV} if name == "tiny" else {})
        | changes.get(name, {})
        for name in NAMES
    }
    return config


def specs(tiny_model_path: Path) -> dict[str, ServerSpec]:
    """The in-process entries of the grid, as `sal with-servers` would serve them (weights: the tiny model)."""
    config = workflow_config()
    for entry in (config["models"]["tiny"], config["prms"]["tiny-judge"]):
        entry["path"] = str(tiny_model_path)
        del entry["prepare"]
    return {spec.name: spec for spec in server_specs(config, NAMES)}


def start(spec: ServerSpec, services: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    """One server requiring an API key (the judge: the run's, as `sal with-servers` gives it); its process
    and service record once it answers."""
    service, log = services / f"{spec.name}.json", services / f"{spec.name}.log"
    keyed = ["--api-key-env", KEY_ENV] if spec.name == "tiny" else []
    env = {**spec.env(RUN_SECRET), KEY_ENV: SECRET, "OMP_NUM_THREADS": "1"}
    process = spawn([*spec.argv(service), *keyed, *extra], service, log, env)
    return process, wait_for_server(process, spec.kind, service, log)


@pytest.fixture(scope="module")
def servers(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    services = tmp_path_factory.mktemp("services")
    started = {name: start(spec, services) for name, spec in specs(tiny_model_path).items()}
    yield {"services": services, **{name: record for name, (_, record) in started.items()}}
    for process, _ in started.values():
        stop_server(process)


@pytest.fixture(scope="module")
def served_run(servers: dict, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = new_workdir(tmp_path_factory.mktemp("served"), served_config(servers["services"]), tiny_model_path)
    snakemake(workdir, env=ENV)
    return workdir


@pytest.fixture
def served_copy(served_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(served_run, tmp_path / "copy", symlinks=True))


def stats(record: dict) -> dict:
    key = SECRET if record["model"] == "tiny" else RUN_SECRET
    return httpx.get(f"{record['url']}/v1/info", headers={"Authorization": f"Bearer {key}"}).json()


def test_served_run_gives_the_in_process_accuracy_table(finished_run: Path, served_run: Path, servers: dict) -> None:
    for table in ("accuracy.csv", "compute_optimal.csv"):
        assert (served_run / f"results/wf/{table}").read_bytes() == (finished_run / f"results/wf/{table}").read_bytes()
    assert stats(servers["tiny"])["stats"]["requests"] > 0  # the model and the PRM really ran in the servers
    assert stats(servers["tiny-judge"])["stats"]["requests"] > 0
    assert planned_jobs(served_run, ENV) == set()


def test_the_api_key_is_written_nowhere(served_run: Path) -> None:
    assert KEY_ENV in (served_run / "results/wf/servers.json").read_text()  # its variable's name, for the jobs
    files = [path for path in served_run.rglob("*") if path.is_file() and not path.is_symlink()]
    assert len(files) > 50 and any(".snakemake/metadata" in str(path) for path in files)
    assert not [
        path for path in files if SECRET.encode() in path.read_bytes() or RUN_SECRET.encode() in path.read_bytes()
    ]


def test_moving_a_server_reruns_nothing(served_copy: Path, servers: dict) -> None:
    moved = {"url": servers["tiny"]["url"], "service_file": None, "timeout": 30, "wait": 5, "max_in_flight": 4}
    elsewhere = {"service_file": str(served_copy / "elsewhere/judge.json"), "retries": 5, "api_key_env": "OTHER"}
    write_config(served_copy, served_config(servers["services"], tiny=moved, **{"tiny-judge": elsewhere}))
    assert planned_jobs(served_copy, ENV) == set()
    assert '"timeout": 30' in (served_copy / "results/wf/servers.json").read_text()  # what the jobs would read


def test_a_changed_served_model_reruns_exactly_the_jobs_that_use_it(served_copy: Path, servers: dict) -> None:
    config = served_config(servers["services"])
    config["prms"]["tiny-judge"]["served_model"] = "judge-v2"
    write_config(served_copy, config)
    jobs = planned_jobs(served_copy, ENV)
    guided = [RUN.format(approach=a, sampling="mix") for a in ("beam-n2.tiny-judge", "dvts.tiny-judge")]
    shards = ("0-2", "2-4")
    assert {job for job in jobs if job[0] == "generate"} == {
        ("generate", f"{run}/shards/{shard}/completions.parquet") for run in guided for shard in shards
    }
    assert {job for job in jobs if job[0] == "score"} == {
        ("score", f"{run}/shards/{shard}/scores/tiny-judge.parquet") for run in [BON, *guided] for shard in shards
    }
    config = served_config(servers["services"])
    config["models"]["tiny"]["revision"] = "0123abcd"
    write_config(served_copy, config)
    generate = {job for job in planned_jobs(served_copy, ENV) if job[0] == "generate"}
    assert len(generate) == 6  # every run of the model, both shards


def run_in_thread(workdir: Path) -> tuple[threading.Thread, dict]:
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=snakemake(workdir, check=False, env=ENV)))
    thread.start()
    return thread, outcome


def kill_when_busy(process: subprocess.Popen, record: dict, thread: threading.Thread) -> None:
    """SIGKILL the server as soon as it holds a request of the running job."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and thread.is_alive():
        if stats(record)["pending"] > 0:
            process.kill()
            return
        time.sleep(0.1)
    raise AssertionError("the generate job never reached the server")


@pytest.mark.slow
def test_a_server_killed_mid_job_fails_it_and_the_rerun_computes_only_that_shard(
    served_copy: Path, servers: dict, tiny_model_path: Path, finished_run: Path
) -> None:
    shutil.rmtree(served_copy / BON / "shards/2-4")
    kept = shard_states(served_copy)
    services = served_copy / "services"  # a new model server, in a new place: no rerun for that
    write_config(served_copy, served_config(servers["services"], tiny={"service_file": str(services / "tiny.json")}))
    spec = specs(tiny_model_path)["tiny"]
    process, record = start(spec, services, "--batch-window-ms", "3000")  # holds requests 3 s: time to kill it
    try:
        thread, outcome = run_in_thread(served_copy)
        kill_when_busy(process, record, thread)
        thread.join(300)
    finally:
        stop_server(process)
    result = outcome["result"]
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert f"sal generate: error: model server {record['url']} (service file {services}/tiny.json)" in out
    assert not (served_copy / BON / "shards/2-4/completions.parquet").exists()
    assert {job for job in planned_jobs(served_copy, ENV) if job[0] in ("generate", "score")} == {
        ("generate", f"{BON}/shards/2-4/completions.parquet"),
        ("score", f"{BON}/shards/2-4/scores/tiny-judge.parquet"),
    }
    process, _ = start(spec, services)  # back, at a new port: found through the same service file
    try:
        snakemake(served_copy, env=ENV)
    finally:
        stop_server(process)
    after = shard_states(served_copy)
    assert {path: after[path] for path in kept} == kept, "the other shards were not recomputed"
    assert sorted(set(after) - set(kept)) == [
        f"{BON}/shards/2-4/completions.parquet",
        f"{BON}/shards/2-4/scores/tiny-judge.parquet",
    ]
    assert (served_copy / "results/wf/accuracy.csv").read_bytes() == (
        finished_run / "results/wf/accuracy.csv"
    ).read_bytes()


def test_a_prm_server_answering_500_fails_the_score_job_naming_it(served_copy: Path, servers: dict) -> None:
    scores = served_copy / BON / "shards/0-2/scores/tiny-judge.parquet"  # Best-of-N: scored by the server
    scores.unlink()
    health = {"status": "ready", "model": {"name": "tiny-judge", "type": "rlhflow", "path": "x", "revision": None}}
    routes = {"/health": (200, health), "/v1/info": (200, {"limits": {}}), "/v1/score": (500, "boom")}
    with broken_server(routes) as url:
        broken = {"url": url, "service_file": None}
        write_config(served_copy, served_config(servers["services"], **{"tiny-judge": broken}))
        result = snakemake(served_copy, check=False, env=ENV)
    assert result.returncode != 0
    assert (
        f"sal score: error: prm server {url}: POST /v1/score answered HTTP 500: 'boom'" in result.stdout + result.stderr
    )
    assert not scores.exists()
