"""Start `sal serve` / `sal serve-prm` processes, wait until they answer, and stop them again.

For `sal with-servers` (servers around one command, such as a local workflow run), benchmarks and
tests that need servers next to them on one machine; on a cluster a server is its own Slurm job and
jobs find it through its service file (docs/slurm.md). A server listens on a free port (`--port 0`)
and announces it in its service file, so there is no port to pick and race for.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sal_core.backends.http_client import read_service_file
from sal_core.errors import ServerError

log = logging.getLogger(__name__)

#: seconds between the notes that a server still waits in the queue
QUEUE_NOTE_EVERY = 60.0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def sal_argv(command: str, args: Sequence[str], service_file: str | Path, host: str | None = None) -> list[str]:
    """`sal COMMAND ARGS` on a free port, writing `service_file` once it answers (host: its --host)."""
    argv = [sys.executable, "-m", "sal_core.cli", command, *args, "--port", "0", "--service-file", str(service_file)]
    return argv + ["--host", host] if host else argv


def spawn(
    argv: Sequence[str], service_file: str | Path, log_path: str | Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Run a server command in the background, logging to `log_path`, after removing a stale service file."""
    Path(service_file).unlink(missing_ok=True)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        return subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def spawn_server(
    command: str, args: Sequence[str], service_file: str | Path, log_path: str | Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Run `sal COMMAND ARGS --port 0 --service-file FILE` in the background, logging to `log_path`."""
    return spawn(sal_argv(command, args, service_file), service_file, log_path, env)


def wait_for_service(
    service_file: str | Path,
    ended: Callable[[], str | None],
    what: str,
    log_path: str | Path,
    timeout: float,
    queued: Callable[[], str | None] = lambda: None,
    note_every: float = QUEUE_NOTE_EVERY,
) -> dict[str, Any]:
    """The service record once `service_file` appears; ServerError with the log's tail when `ended()` says
    why the server is gone, or `timeout` seconds after it started: while `queued()` says why it waits
    (a Slurm job pending), no time counts, and a note says so every `note_every` seconds."""
    service_file, log_path = Path(service_file), Path(log_path)
    deadline = None
    noted = None
    while not service_file.exists():
        reason = ended()
        if reason:
            raise ServerError(f"{what} {reason}:\n{_tail(log_path)}")
        now = time.monotonic()
        waiting = queued()
        if waiting:
            deadline = None  # counts again from when it starts (a requeued job starts anew)
            if noted is None or now - noted >= note_every:
                log.info("%s waits in the queue (%s); --timeout counts from when it starts", what, waiting)
                noted = now
        elif deadline is None:
            deadline = now + timeout
        elif now > deadline:
            raise ServerError(f"{what} did not answer within {timeout:g} s of starting:\n{_tail(log_path)}")
        time.sleep(0.5)
    return read_service_file(service_file, 0, what)


def wait_for_server(
    process: subprocess.Popen, command: str, service_file: str | Path, log_path: str | Path, timeout: float = 300.0
) -> dict[str, Any]:
    """The server's service record once its file appears; ServerError with the log's tail if the process
    dies or does not answer within `timeout` seconds (it is then stopped)."""

    def ended() -> str | None:
        return None if process.poll() is None else f"exited with {process.returncode}"

    try:
        return wait_for_service(service_file, ended, f"sal {command}", log_path, timeout)
    except ServerError:
        stop_server(process)
        raise


def start_server(
    command: str,
    args: Sequence[str],
    service_file: str | Path,
    log_path: str | Path,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Start one server (see spawn_server) and return the process and its service record once it answers."""
    process = spawn_server(command, args, service_file, log_path, env)
    return process, wait_for_server(process, command, service_file, log_path, timeout)


def stop_server(process: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """SIGTERM (the server removes its service file), then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
