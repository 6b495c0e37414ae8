"""Start a `sal serve` / `sal serve-prm` process and wait until it answers; stop it again.

For scripts, benchmarks and tests that need a server next to them on one machine (on a cluster, the
server is its own Slurm job and jobs find it through its service file). The server listens on a
free port (`--port 0`) and announces it in its service file, so there is no port to pick and race for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sal_core.errors import ServerError
from sal_core.serving.service import read_service_file


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_server(
    command: str,
    args: Sequence[str],
    service_file: str | Path,
    log_path: str | Path,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Run `sal COMMAND ARGS --port 0 --service-file FILE`, logging to `log_path`; return the process and
    its service record once the file appears. Raises ServerError with the log's tail if it dies or times out."""
    service_file, log_path = Path(service_file), Path(log_path)
    service_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "sal_core.cli", command, *args, "--port", "0", "--service-file", str(service_file)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    while not service_file.exists():
        if process.poll() is not None:
            raise ServerError(f"sal {command} exited with {process.returncode}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            stop_server(process)
            raise ServerError(f"sal {command} did not answer within {timeout:g} s:\n{_tail(log_path)}")
        time.sleep(0.2)
    return process, read_service_file(service_file, 0, f"sal {command}")


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
