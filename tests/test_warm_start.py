"""Warm starts (sal_core.warm_start): a step forked from the server runs in the client's folder, with
its environment and streams, and the client exits with the step's status; a signal to the client
stops the step; without a server the step runs cold. End to end through `sal warm-start`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sal_core.warm_start import exit_status, run_forwarded, running_server

CLIENT = "import sys; from sal_core.warm_start import run_forwarded; sys.exit(run_forwarded(sys.argv[1], sys.argv[2:]))"


@contextlib.contextmanager
def server(tmp_path: Path, step: Callable[[list[str]], int]) -> Iterator[tuple[str, int]]:
    """A fork server running `step` for each request, forked from this test process: its socket
    path and pid."""
    path = str(tmp_path / "warm.sock")
    with running_server(path, step) as pid:
        yield path, pid


def _echo_step(argv: list[str]) -> int:
    print(json.dumps({"argv": argv, "cwd": os.getcwd(), "x": os.environ.get("X"), "parent": os.getppid()}))
    print("to stderr", file=sys.stderr)
    return int(argv[0])


def test_forked_step_has_the_clients_folder_environment_streams_and_status(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with (
        server(tmp_path, _echo_step) as (path, server_pid),
        open(tmp_path / "out", "w") as out,
        open(tmp_path / "err", "w") as err,
    ):
        client = subprocess.run(
            [sys.executable, "-c", CLIENT, path, "3", "more"],
            cwd=work,
            env={**os.environ, "X": "from the client"},
            stdout=out,
            stderr=err,
            timeout=60,
        )
    seen = json.loads((tmp_path / "out").read_text())
    assert client.returncode == 3
    assert seen["argv"] == ["3", "more"] and seen["cwd"] == str(work) and seen["x"] == "from the client"
    assert seen["parent"] == server_pid  # it ran in a child of the server, not in the client
    assert (tmp_path / "err").read_text() == "to stderr\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["forwarded", "client-killed"])
def test_a_signal_to_the_client_stops_the_step(tmp_path: Path, sig: int) -> None:
    """SIGTERM is forwarded to the step; a client killed outright hangs up, and the server stops the step."""

    def slow_step(argv: list[str]) -> int:
        Path(argv[0]).write_text(str(os.getpid()))
        time.sleep(60)
        return 0

    started = tmp_path / "started"
    with server(tmp_path, slow_step) as (path, _):
        client = subprocess.Popen([sys.executable, "-c", CLIENT, path, str(started)])
        deadline = time.monotonic() + 30
        while not started.exists() or not started.read_text():
            assert time.monotonic() < deadline, "the step did not start"
            time.sleep(0.05)
        client.send_signal(sig)
        assert client.wait(timeout=30) == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
        child = int(started.read_text())
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
            assert time.monotonic() < deadline, "the step outlived its client"
            time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_without_a_server_the_client_says_so() -> None:
    assert run_forwarded("/nonexistent/warm.sock", ["generate"]) is None


def test_exit_status_of_a_signalled_child() -> None:
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert exit_status(status) == 128 + signal.SIGKILL


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sal_warm_start_runs_steps_forked_and_passes_the_status_on(tmp_path: Path) -> None:
    # job steps (offline, sal_core.hub) are forked; steps that may reach the Hub (prepare-dataset) run cold
    script = (
        "sal prepare-model --source tiny-random --out model 2> ok.log; echo $? > ok.status; "
        "sal prepare-model --source tiny-random 2> bad.log; echo $? > bad.status; "
        "sal prepare-dataset --dataset '{}' --out bad.parquet 2> cold.log; "
        'echo "$SAL_WARM_START" > socket; exit 7'
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["sal", "warm-start", "--", "sh", "-c", script], cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 7  # the command's own status
    assert (tmp_path / "ok.status").read_text().strip() == "0" and (tmp_path / "model" / "config.json").is_file()
    assert "forked from the warm-start server" in (tmp_path / "ok.log").read_text().splitlines()[0]
    assert "forked" not in (tmp_path / "cold.log").read_text()
    assert (tmp_path / "bad.status").read_text().strip() == "2"  # a step's error status comes back
    assert "error" in (tmp_path / "bad.log").read_text()
    socket = Path((tmp_path / "socket").read_text().strip())
    assert socket.name == "warm.sock" and not socket.parent.exists()  # the server's folder is gone
