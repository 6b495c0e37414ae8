"""Checks of vLLM's processes and servers shared by the tests and bench/gpu_check_serving.py: every route
of a running `vllm serve`, read from its log (serving/vllm_auth.py lists the app's own routes at
start-up, those openapi leaves out included), and what each answers without the key; a `sal generate`
job on vLLM killed once its engine process exists, and the engine processes it leaves."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sal_core.serving.vllm_auth import OPEN_PATHS, ROUTES_LINE

#: a websocket handshake, so the server really opens a websocket scope for websocket routes
UPGRADE = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
           "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip


#: the engine tests' problems (tests/test_vllm_engine.py, tests/test_vllm_engine_exit.py)
PROBLEMS = ["What is 2 + 3?", "What is $12 \\times 4$?", "Simplify $\\frac{6}{8}$.", "What is 100 - 37?"]


def engine_runs() -> bool:
    """Whether vLLM's engine can start here: its CPU build, or a CUDA GPU."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu() or current_platform.is_cuda()


def served_routes(log: Path) -> list[dict[str, Any]]:
    """The routes the server's RequireKey listed in its log (AssertionError when it listed none)."""
    lines = [line for line in log.read_text().splitlines() if line.startswith(ROUTES_LINE)]
    assert lines, f"{log}: no line starting {ROUTES_LINE!r}: was the server started with vllm_auth's middleware?"
    return json.loads(lines[-1][len(ROUTES_LINE) :])


def requests_for(route: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) to try on one route: each of its methods and OPTIONS; path parameters filled in."""
    path = re.sub(r"\{[^}]+\}", "x", route["path"]) or "/"
    if route["kind"] == "WebSocketRoute":
        return [("WEBSOCKET", path)]
    if route["kind"] == "Mount":
        return [("GET", path), ("GET", path.rstrip("/") + "/"), ("POST", path)]
    return [(method, path) for method in route["methods"] or ["GET"]] + [("OPTIONS", path)]


def unkeyed_answers(url: str, routes: list[dict[str, Any]], headers: dict[str, str] | None = None) -> dict[str, int]:
    """'METHOD path' -> the status each request gets without the key (or with `headers`)."""
    import httpx

    answers = {}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for route in routes:
            for method, path in requests_for(route):
                sent = {**(headers or {}), **(UPGRADE if method == "WEBSOCKET" else {})}
                verb = "GET" if method == "WEBSOCKET" else method
                answers[f"{method} {path}"] = client.request(verb, path, headers=sent, json={}).status_code
    return answers


def open_without_key(answers: dict[str, int]) -> dict[str, int]:
    """The requests answered other than 401, the readiness probe (GET of OPEN_PATHS) aside."""
    return {
        request: status
        for request, status in answers.items()
        if status != 401
        and not (request.split(" ", 1)[0] in ("GET", "HEAD") and request.split(" ", 1)[1] in OPEN_PATHS)
    }


#: what vLLM names its engine's processes (process titles: in both comm and cmdline)
ENGINE_NAMES = ("EngineCore", "VLLM::Worker")


def engine_process(process: Any) -> bool:
    """Whether a psutil process is one of vLLM's engine processes, by its name or command line."""
    import psutil

    try:
        title = f"{process.name()} {' '.join(process.cmdline())}"
    except psutil.Error:
        return False
    return any(name in title for name in ENGINE_NAMES)


def alive(process: Any) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def generate_job(problems: list[str], model_path: Path, folder: Path, device: str = "auto") -> tuple[Any, Path]:
    """`sal generate` of a Best-of-64 shard on vLLM, its output lines readable as it runs."""
    import pandas as pd

    table = folder / "problems.parquet"
    rows = [{"problem_id": str(i), "problem": p, "answer": "1", "level": 1} for i, p in enumerate(problems)]
    pd.DataFrame(rows).to_parquet(table)
    job = {
        "model": {"name": "tiny", "path": str(model_path), "backend": "vllm", "max_model_len": 512, "device": device},
        "search": {"method": "best_of_n", "n": 64, "max_tokens": 200, "temperatures": [1.0]},
    }
    out = folder / "completions.parquet"
    argv = [sys.executable, "-m", "sal_core.cli", "generate", "--problems", str(table), "--start", "0"]
    argv += ["--end", str(len(problems)), "--job", json.dumps(job), "--out", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out


def kill_once_engine_starts(job: Any, timeout: float = 300.0) -> tuple[set[Any], set[Any], str]:
    """SIGKILL `job` as soon as one of its descendants is an engine process (or it ends, or time runs
    out); every descendant seen meanwhile, those named as engine processes while they ran, and the
    job's output."""
    import psutil

    seen: set[psutil.Process] = set()
    engines: set[psutil.Process] = set()
    deadline = time.monotonic() + timeout
    while not engines and job.poll() is None and time.monotonic() < deadline:
        try:
            seen |= set(psutil.Process(job.pid).children(recursive=True))
        except psutil.Error:
            break
        engines = {p for p in seen if engine_process(p)}
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    try:
        output, _ = job.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # what the job left behind still holds its output pipe
        job.wait()
        output = "(the job's output pipe is still held open by a process it left behind)"
    return seen, engines, output


def left_running(seen: set[Any], within: float = 30.0) -> list[str]:
    """The engine processes among `seen` still running after up to `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(alive(p) for p in seen):
        time.sleep(0.5)
    return [p.name() for p in seen if alive(p)]
