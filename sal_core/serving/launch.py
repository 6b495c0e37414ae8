"""Start `sal serve` / `sal serve-prm` processes, wait until they answer, and stop them again.

For `sal with-servers` (servers around one command, such as a local workflow run), benchmarks and
tests that need servers next to them on one machine; on a cluster a server is its own Slurm job and
jobs find it through its service file (docs/slurm.md). A server listens on a free port (`--port 0`)
and announces it in its service file, so there is no port to pick and race for.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sal_core.errors import ConfigError, ServerError
from sal_core.serving.service import read_service_file
from sal_core.settings.grid import named_settings
from sal_core.settings.jobs import ModelSettings, PRMSettings

log = logging.getLogger(__name__)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def spawn_server(
    command: str, args: Sequence[str], service_file: str | Path, log_path: str | Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Run `sal COMMAND ARGS --port 0 --service-file FILE` in the background, logging to `log_path`."""
    service_file, log_path = Path(service_file), Path(log_path)
    service_file.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "sal_core.cli", command, *args, "--port", "0", "--service-file", str(service_file)]
    with open(log_path, "w") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def wait_for_server(
    process: subprocess.Popen, command: str, service_file: str | Path, log_path: str | Path, timeout: float = 300.0
) -> dict[str, Any]:
    """The server's service record once its file appears; ServerError with the log's tail if the process
    dies or does not answer within `timeout` seconds (it is then stopped)."""
    service_file, log_path = Path(service_file), Path(log_path)
    deadline = time.monotonic() + timeout
    while not service_file.exists():
        if process.poll() is not None:
            raise ServerError(f"sal {command} exited with {process.returncode}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            stop_server(process)
            raise ServerError(f"sal {command} did not answer within {timeout:g} s:\n{_tail(log_path)}")
        time.sleep(0.2)
    return read_service_file(service_file, 0, f"sal {command}")


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


@dataclass(frozen=True)
class ServerSpec:
    """One server `sal with-servers` starts: a models: or prms: entry of a workflow config, in process."""

    name: str
    command: str
    settings: ModelSettings | PRMSettings
    #: the folder to build first (`prepare:` entries), and its prepare source
    prepare: tuple[str, str] | None = None

    def arguments(self) -> list[str]:
        flag = "--model" if self.command == "serve" else "--prm"
        return [flag, json.dumps(asdict(self.settings))]


def server_specs(config: dict[str, Any], names: Sequence[str]) -> list[ServerSpec]:
    """The servers for entries `names` of a workflow config (models: -> `sal serve`, prms: -> `sal serve-prm`),
    checked before anything starts; each is served under its entry's name."""
    prepared: dict[str, str] = {}
    entries = {
        **{name: ("serve-prm", s) for name, s in named_settings(config, "prms", PRMSettings, prepared, False).items()},
        **{name: ("serve", s) for name, s in named_settings(config, "models", ModelSettings, prepared, True).items()},
    }
    specs = []
    for name in names:
        if name not in entries:
            raise ConfigError(
                f"--serve {name}: not an entry of the config's models or prms (those: {', '.join(entries)})"
            )
        command, settings = entries[name]
        if settings.served:
            raise ConfigError(f"--serve {name}: is itself served; name an entry that loads its weights")
        prepare = (settings.path, prepared[settings.path]) if settings.path in prepared else None
        specs.append(ServerSpec(name, command, settings, prepare))
    return specs


def run_with_servers(
    specs: Sequence[ServerSpec], command: Sequence[str], services: Path, logs: Path, threads: int = 1
) -> int:
    """Start the servers (service files `services/<name>.json`, logs `logs/<name>.log`), run `command`
    once all answer, and stop the servers whatever happens (failure, Ctrl-C); the command's exit status."""
    from sal_core.pipeline.prepare_model import prepare_model

    for spec in specs:
        if spec.prepare and not (Path(spec.prepare[0]) / "config.json").is_file():
            log.info("building %s into %s first", spec.prepare[1], spec.prepare[0])
            prepare_model(spec.prepare[1], spec.prepare[0])
    env = {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    running: list[tuple[ServerSpec, subprocess.Popen]] = []
    try:
        for spec in specs:  # all load at once
            service = services / f"{spec.name}.json"
            running.append(
                (spec, spawn_server(spec.command, spec.arguments(), service, logs / f"{spec.name}.log", env))
            )
        for spec, process in running:
            record = wait_for_server(process, spec.command, services / f"{spec.name}.json", logs / f"{spec.name}.log")
            log.info(
                "sal %s serves %s at %s (log %s)", spec.command, spec.name, record["url"], logs / f"{spec.name}.log"
            )
        return subprocess.call(list(command))
    finally:
        for spec, process in reversed(running):
            stop_server(process)
            log.info("stopped the server of %s", spec.name)
