"""Serving and exit checks for a first GPU run (and on vLLM's CPU build here): imported by
bench/gpu_check.py (`run_checks`), or run alone:

    .venv-vllm/bin/python bench/gpu_check_serving.py [--device cpu|cuda]

1. `vllm serve` closed by the run's key on every route (serving/vllm_auth.py): a generation server
   and a `--runner pooling` server of Qwen2.5-Math-PRM's architecture (tiny random weights), each
   started as `sal with-servers` starts it, one at a time; every route the running app lists answers
   401 without the key (and with a wrong one) but GET /health, and a keyed request is served.
2. The reaper (backends/reaper.py): a `sal generate` job on vLLM killed by SIGKILL as soon as its
   EngineCore exists (during the engine's start-up) leaves no engine process.

Every engine runs alone: call `run_checks` with no other vLLM engine alive (a GPU holds one at vLLM's
default memory share). Needs vLLM; the checks are skipped without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tiny model builders and vLLM probes the tests use

from tiny_qwen_prm import tiny_qwen_prm  # noqa: E402
from tiny_tokenizers import tiny_model_folder, word_tokenizer  # noqa: E402
from vllm_checks import (  # noqa: E402
    generate_job,
    kill_once_engine_starts,
    left_running,
    open_without_key,
    served_routes,
    unkeyed_answers,
)

from sal_core.backends.vllm_engine import NO_TRACKING  # noqa: E402
from sal_core.constants import CAPACITY_HEADER  # noqa: E402
from sal_core.serving.around import server_specs, start_local  # noqa: E402
from sal_core.serving.launch import wait_for_service  # noqa: E402

#: routes each server must have (so a probe of an empty list cannot pass)
EXPECTED = {
    "generation": {"/health", "/v1/completions", "/invocations", "/tokenize", "/metrics"},
    "pooling": {"/health", "/pooling", "/invocations", "/tokenize", "/metrics"},
}
PROBLEMS = ["What is 2 + 3?", "What is 7 - 4?"]


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def tiny_models(workdir: Path) -> dict[str, Path]:
    """A tiny Llama (heads of 64 dimensions, which every vLLM attention backend takes) and a tiny
    Qwen2ForProcessRewardModel on its tokenizer."""
    policy = tiny_model_folder(word_tokenizer("renders-bos"), workdir / "policy", hidden_size=128)
    if not (workdir / "prm" / "config.json").is_file():
        tiny_qwen_prm(policy, workdir / "prm")
    return {"policy": policy, "prm": workdir / "prm"}


def server_config(kind: str, folder: Path, device: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """The config and the --serve / --serve-vllm names that start one server of `kind`."""
    if kind == "generation":
        entry = {"path": str(folder), "backend": "vllm", "max_model_len": 64, "enforce_eager": True}
        if device != "cpu":
            entry["gpu_memory_utilization"] = 0.3
        return {"models": {"tiny": entry}}, ["tiny"], []
    prm = {"type": "qwen2.5-math", "path": str(folder), "max_length": 256}
    return {"models": {"tiny": {"path": str(folder)}}, "prms": {"tiny": prm}}, [], ["tiny"]


def check_routes(kind: str, folder: Path, workdir: Path, device: str) -> str:
    """Start the server with a key, probe every route without it, and one keyed request."""
    import httpx

    config, serve, serve_vllm = server_config(kind, folder, device)
    (spec,) = server_specs(config, serve, serve_vllm)
    key = "k-" + os.urandom(12).hex()
    service, log = workdir / f"{kind}.json", workdir / f"{kind}.log"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    python_path = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )  # vLLM imports our middleware
    env = {**os.environ, **NO_TRACKING, "PATH": path, "PYTHONPATH": python_path, **spec.env(key)}
    server = start_local(spec, service, log, env)
    try:
        url = wait_for_service(service, server.ended, f"vllm serve ({kind})", log, timeout=600)["url"]
        routes = served_routes(log)
        missing = EXPECTED[kind] - {route["path"] for route in routes}
        expect(not missing, f"the app lists no {sorted(missing)}")
        for headers in (None, {"Authorization": "Bearer wrong"}):
            answers = unkeyed_answers(url, routes, headers)
            opened = open_without_key(answers)
            expect(not opened, f"answered without the key: {opened}")
        keyed = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30.0)
        expect(keyed.status_code == 200, f"GET /v1/models with the key: HTTP {keyed.status_code}")
        capacity = keyed.headers.get(CAPACITY_HEADER, "")
        expect(capacity.isdigit(), f"no {CAPACITY_HEADER} (max_num_seqs) on a keyed answer")
        return f"{len(answers)} requests on {len(routes)} routes: 401 but GET /health; keyed 200, capacity {capacity}"
    finally:
        server.stop()


def check_reaper(folder: Path, workdir: Path) -> str:
    """SIGKILL a `sal generate` job on vLLM once its EngineCore exists: nothing of the engine stays."""
    job_dir = workdir / "reaper"
    job_dir.mkdir(exist_ok=True)
    job, out = generate_job(PROBLEMS, folder, job_dir)
    seen, engines, output = kill_once_engine_starts(job)
    expect(job.returncode == -signal.SIGKILL, f"the job ended by itself first: {output[-500:]}")
    expect(bool(engines), f"no engine process appeared: {output[-500:]}")
    expect("loaded tiny" not in output, "the engine had finished starting: not a kill during start-up")
    left = left_running(seen)
    expect(not left and not out.exists(), f"left running: {left}")
    return f"killed during start-up with {len(engines)} engine process(es): none left after it"


def run_checks(report: Any, device: str, workdir: Path) -> None:
    """The serving and exit checks, reported through `report.check(name, fn)` (bench/gpu_check.py)."""
    if importlib.util.find_spec("vllm") is None:
        report.skip("serving/vllm-routes", "vLLM is not installed (make vllm-env)")
        return
    os.environ.update(NO_TRACKING)
    workdir.mkdir(parents=True, exist_ok=True)
    models = tiny_models(workdir)
    report.check(
        "serving/vllm-routes-generation", lambda: check_routes("generation", models["policy"], workdir, device)
    )
    report.check("serving/vllm-routes-pooling", lambda: check_routes("pooling", models["prm"], workdir, device))
    report.check("exit/reaper-during-start", lambda: check_reaper(models["policy"], workdir))


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_check import Report

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="gpu-check-serving-") as folder:
        run_checks(report, args.device, Path(folder))
    print(json.dumps({"failed": report.failed}))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
