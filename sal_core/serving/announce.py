"""Give any OpenAI-compatible server (`vllm serve`, SGLang, ...) a service file, as `sal serve` writes one.

`sal announce --service-file FILE -- vllm serve MODEL ...` picks a free port, runs the command with
`--host HOST --port PORT` appended, waits until GET /health answers 200, then writes the service file
(atomically: url, host, port, pid, Slurm job id, start time), so jobs that wait for the file find a
server that answers. When the server stops, or on SIGTERM/SIGINT (passed on to it), the file is
removed. This is what the seed's `start_prm_server.py` did for vLLM, except that it wrote the file
before vLLM had loaded the model.

A `vllm serve` is run only closed: with serving/vllm_auth.py's middleware (the key on every route) and
its key in VLLM_API_KEY; a command without either, or with the key on its command line (`--api-key`,
which `ps` shows every user of the node), is refused in one line before anything starts.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sal_core.errors import ServerError
from sal_core.executable import find_program, interpreter_folder_first
from sal_core.serving.service import remove_service_file, service_record, write_service_file
from sal_core.serving.vllm_auth import KEY_ENV, MIDDLEWARE, middleware_args

log = logging.getLogger(__name__)


def free_port(host: str) -> int:
    """A port nobody listens on now (the server binds it a moment later; a clash fails its start)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_health(process: subprocess.Popen, url: str, timeout: float, poll: float = 1.0) -> None:
    """Until GET url/health answers 200; ServerError when the process exits first or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServerError(f"the server exited with {process.returncode} before answering {url}/health")
        try:
            if httpx.get(f"{url}/health", timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"the server did not answer {url}/health within {timeout:g} s")
        time.sleep(poll)


def check_vllm_keyed(command: Sequence[str], env: dict[str, str] | os._Environ = os.environ) -> None:
    """ServerError unless a `vllm serve` command would require the key on every route (others pass)."""
    if len(command) < 2 or os.path.basename(command[0]) != "vllm" or command[1] != "serve":
        return
    flags = " ".join(middleware_args())
    if any(arg == "--api-key" or arg.startswith("--api-key=") for arg in command):
        raise ServerError(f"vllm serve --api-key puts the key where `ps` shows it: export {KEY_ENV} instead")
    if not env.get(KEY_ENV):
        raise ServerError(f"vllm serve would answer anyone: {KEY_ENV} is not set (export the key there, and {flags})")
    given = [b for a, b in zip(command, command[1:], strict=False) if a == "--middleware"]
    if MIDDLEWARE not in given + [arg.removeprefix("--middleware=") for arg in command]:
        raise ServerError(
            f"vllm serve would leave routes outside /v1 open (/pooling, /tokenize, /metrics): add {flags}"
        )


def announce(command: Sequence[str], service_file: str | Path, host: str, timeout: float) -> int:
    """Run `command` as a server on a free port, with a service file while it answers; its exit status."""
    check_vllm_keyed(command)
    env = dict(os.environ)
    interpreter_folder_first(env)  # `vllm` beside this Python first (sal_core.executable)
    program = find_program(command[0], env)  # one line, not a traceback, when it is nowhere
    port = free_port(host)
    process = subprocess.Popen([program, *command[1:], "--host", host, "--port", str(port)], env=env)

    def stop(signum: int, _frame: Any) -> None:
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        probe = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        wait_for_health(process, probe, timeout)
        write_service_file(service_file, service_record(host, port, kind="external", command=list(command[:2])))
        log.info("%s answers at port %d; service file %s", " ".join(command[:2]), port, service_file)
        return process.wait()
    finally:
        remove_service_file(service_file, os.getpid())
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
