"""A real `vllm serve` (vLLM's CPU build here) started as `sal with-servers` starts it, and the
`backend: openai` client against it: the server samples with what each request sends, never with the
model's generation_config.json defaults, and its finish reasons map as the in-process engines' do;
every route of it but /health answers 401 without the run's key (serving/vllm_auth.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vllm_checks import open_without_key, served_routes, unkeyed_answers

from sal_core.backends import GenerationRequest, load_backend
from sal_core.backends.transformers_backend import TransformersBackend
from sal_core.constants import CAPACITY_HEADER
from sal_core.search.prompts import build_prompt
from sal_core.serving.around import server_specs, start_local
from sal_core.serving.launch import wait_for_service
from sal_core.settings.endpoint import build_servers
from sal_core.settings.jobs import DEFAULT_SYSTEM_PROMPT, ModelSettings
from sal_core.tables import read_table

pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm
KEY_ENV = "TEST_VLLM_SERVE_KEY"


@pytest.fixture(scope="module")
def served(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """SmolLM2 behind `vllm serve`, its generation_config.json asking for greedy-like sampling
    (top_k 1) and a strong repetition penalty: defaults the server must not apply."""
    root = tmp_path_factory.mktemp("vllm-serve")
    folder = shutil.copytree(smollm2_path, root / "smollm2")
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "top_k": 1, "repetition_penalty": 2.0}))
    entry = {"path": str(folder), "backend": "vllm", "max_model_len": 1024}
    (spec,) = server_specs({"models": {"smol": entry}}, ["smol"])
    key = "k-" + os.urandom(8).hex()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **spec.env(key)}
    server = start_local(spec, root / "smol.json", root / "smol.log", env)
    try:
        wait_for_service(root / "smol.json", server.ended, "vllm serve", root / "smol.log", timeout=600)
        os.environ[KEY_ENV] = key
        settings = ModelSettings(
            name="smol", path=str(folder), backend="openai", served_model="smol", max_model_len=1024
        )
        location = {"smol": {"service_file": str(root / "smol.json"), "api_key_env": KEY_ENV}}
        yield load_backend(settings, build_servers(location)), folder, root
    finally:
        server.stop()


def test_seeds_give_distinct_samples_whatever_the_models_defaults(served) -> None:
    """With the model's top_k 1 applied every seed would give the same text."""
    backend, _, _ = served
    prompt = build_prompt(backend.tokenizer, "Write a short story about a cat.", DEFAULT_SYSTEM_PROMPT, None)
    outputs = backend.generate([GenerationRequest(prompt, 1.0, max_tokens=24, seed=s) for s in range(6)])
    assert len({o.text for o in outputs}) == 6


def test_finish_reasons_and_greedy_text_match_the_in_process_engine(served) -> None:
    backend, folder, _ = served
    local = TransformersBackend(ModelSettings(name="smol", path=str(folder), max_model_len=1024))
    problems = ("What is 2 + 3?", "Simplify 6/8.")
    prompts = [build_prompt(local.tokenizer, p, DEFAULT_SYSTEM_PROMPT, None) for p in problems]
    requests = [GenerationRequest(p, 0.0, max_tokens=64, stop=("\n\n",)) for p in prompts]
    requests += [GenerationRequest(prompts[0], 0.0, max_tokens=3), GenerationRequest(prompts[0], 0.0, max_tokens=400)]
    got, expected = backend.generate(requests), local.generate(requests)
    assert "stop" in {o.finish_reason for o in got[:2]}
    assert [o.finish_reason for o in got[2:]] == ["length", "eos"]
    assert got == expected


def test_every_route_but_health_needs_the_key(served) -> None:
    """Each route the running app has (listed from the app object at start-up, openapi's omissions
    included), each of its methods and OPTIONS, without the key and with a wrong one: 401, but GET
    /health (empty: nothing about the model). vLLM's own key covered /v1 only: /invocations,
    /tokenize and /metrics answered 200 to anyone."""
    _, _, root = served
    url = json.loads((root / "smol.json").read_text())["url"]
    routes = served_routes(root / "smol.log")
    paths = {route["path"] for route in routes}
    assert {"/health", "/invocations", "/tokenize", "/metrics", "/v1/completions", "/v1/models"} <= paths
    for headers in (None, {"Authorization": "Bearer wrong"}):
        answers = unkeyed_answers(url, routes, headers)
        assert open_without_key(answers) == {}, answers
        assert answers["GET /health"] == 200
    import httpx

    keyed = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {os.environ[KEY_ENV]}"}, timeout=30)
    assert keyed.status_code == 200 and int(keyed.headers[CAPACITY_HEADER]) > 0  # the engine's max_num_seqs
    assert CAPACITY_HEADER not in httpx.get(f"{url}/health", timeout=30).headers


def running_requests(url: str) -> float:
    """vLLM's `vllm:num_requests_running` gauge (its /metrics, with the key)."""
    import httpx

    key = {"Authorization": f"Bearer {os.environ[KEY_ENV]}"}
    text = httpx.get(f"{url}/metrics", timeout=5.0, headers=key).text
    lines = [line for line in text.splitlines() if line.startswith("vllm:num_requests_running")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def generate_job(folder: Path, root: Path, out: Path) -> subprocess.Popen:
    """`sal generate` of a 2-problem Best-of-N shard through the module's server (16 long samples)."""
    from sal_core.pipeline.prepare_dataset import DatasetSettings, snapshot_problems

    problems = root / "problems.parquet"
    if not problems.exists():
        settings = {"name": "e", "source": "builtin", "path": "easy_math", "limit": 2}
        snapshot_problems(DatasetSettings.from_dict(settings), problems)
    model = {"name": "smol", "path": str(folder), "backend": "openai", "served_model": "smol", "max_model_len": 1024}
    job = {"model": model, "search": {"method": "best_of_n", "n": 8, "max_tokens": 400}}
    servers = {"smol": {"service_file": str(root / "smol.json"), "api_key_env": KEY_ENV, "retries": 1}}
    argv = [sys.executable, "-m", "sal_core.cli", "generate", "--problems", str(problems), "--start", "0"]
    argv += ["--end", "2", "--job", json.dumps(job), "--servers", json.dumps(servers), "--out", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_server_killed_mid_job_fails_it_naming_the_server_and_the_rerun_writes_the_shard(served) -> None:
    """SIGKILL to `vllm serve` (API server and engine) while it holds the job's requests: the job fails
    in one line naming the server, writes no shard; with a server back, the same job writes it. Kills
    the module's server, so it runs last."""
    import psutil

    _, folder, root = served
    record = json.loads((root / "smol.json").read_text())
    out = root / "completions.parquet"
    job = generate_job(folder, root, out)
    deadline = time.monotonic() + 300
    while running_requests(record["url"]) == 0:
        assert job.poll() is None and time.monotonic() < deadline, "the job never reached the server"
        time.sleep(0.1)
    for process in psutil.Process(record["pid"]).children(recursive=True):  # under `sal announce`
        process.kill()
    _, err = job.communicate(timeout=300)
    last = err.strip().splitlines()[-1]
    assert job.returncode == 2, err[-2000:]
    assert last.startswith(f"sal generate: error: model server {record['url']} (service file {root}/smol.json)")
    assert not out.exists() and not list(root.glob(".completions.parquet.*"))
    entry = {"path": str(folder), "backend": "vllm", "max_model_len": 1024}
    (spec,) = server_specs({"models": {"smol": entry}}, ["smol"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = start_local(spec, root / "smol.json", root / "smol-again.log", {**env, **spec.env(os.environ[KEY_ENV])})
    try:
        wait_for_service(root / "smol.json", server.ended, "vllm serve", root / "smol-again.log", timeout=600)
        again = generate_job(folder, root, out)
        _, err = again.communicate(timeout=600)
        assert again.returncode == 0, err[-2000:]
    finally:
        server.stop()
    assert len(read_table(out)) == 2
