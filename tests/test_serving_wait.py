"""`sal with-servers`: its --timeout counts from when a server starts, not while it waits in a queue (said
once a minute); the programs it starts are found beside its own interpreter first, and a missing one
is one line. The same wait on the real Slurm, with a held job: tests/test_slurm_served.py."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from sal_core.cli import main
from sal_core.errors import ConfigError, ServerError
from sal_core.executable import find_program, interpreter_folder_first
from sal_core.serving.around import run_with_servers
from sal_core.serving.launch import wait_for_service


def _write_later(path: Path, after: float) -> threading.Thread:
    """A server that answers `after` seconds from now: its service file appears then."""

    def write() -> None:
        time.sleep(after)
        path.write_text('{"url": "http://127.0.0.1:1", "host": "127.0.0.1", "port": 1}')

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_queue_time_does_not_count_against_the_timeout(tmp_path: Path, caplog) -> None:
    """Queued for 2.2 s, then answering 0.5 s after it starts: within a 1.5 s timeout, with a note every
    `note_every` (1 s) while queued, not at every poll (0.5 s), and none after."""
    service = tmp_path / "s.json"
    started = time.monotonic() + 2.2
    _write_later(service, 2.7)
    queued = lambda: "Slurm job 7 PENDING, reason Resources" if time.monotonic() < started else None  # noqa: E731
    with caplog.at_level(logging.INFO, logger="sal_core.serving.launch"):
        record = wait_for_service(service, lambda: None, "the server of m", tmp_path / "log", 1.5, queued, 1.0)
    assert record["url"] == "http://127.0.0.1:1"
    notes = [r.getMessage() for r in caplog.records if "waits in the queue" in r.getMessage()]
    assert len(notes) in (2, 3), notes  # at 0, 1 and 2 s (2.2 s on a loaded machine: no third)
    assert notes[0] == (
        "the server of m waits in the queue (Slurm job 7 PENDING, reason Resources);"
        " --timeout counts from when it starts"
    )


def test_the_timeout_still_counts_once_the_server_runs(tmp_path: Path) -> None:
    (tmp_path / "log").write_text("loading weights\n")
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"did not answer within 0.5 s of starting:\nloading weights"):
        wait_for_service(tmp_path / "never.json", lambda: None, "the server of m", tmp_path / "log", 0.5)
    assert time.monotonic() - started < 3


def test_programs_are_found_beside_the_interpreter_first(tmp_path: Path, monkeypatch) -> None:
    bin_dir, elsewhere = tmp_path / "venv" / "bin", tmp_path / "elsewhere"
    for folder in (bin_dir, elsewhere):
        folder.mkdir(parents=True)
        (folder / "vllm").write_text("#!/bin/sh\necho vllm\n")
        (folder / "vllm").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    env = {"PATH": f"{elsewhere}:/usr/bin:/bin"}
    assert find_program("vllm", env) == str(bin_dir / "vllm")
    interpreter_folder_first(env)
    interpreter_folder_first(env)  # once
    assert env["PATH"] == f"{bin_dir}:{elsewhere}:/usr/bin:/bin"
    (bin_dir / "vllm").unlink()
    assert find_program("vllm", env) == str(elsewhere / "vllm")
    with pytest.raises(ConfigError, match=r"^`vllm` is neither next to .*python nor on PATH: install vLLM"):
        find_program("vllm", {"PATH": "/usr/bin:/bin"})


def test_the_wrapped_command_runs_with_the_interpreters_folder_first(tmp_path: Path, monkeypatch) -> None:
    """A program beside the interpreter wins over PATH's for the command (and the servers), also when
    the environment was never activated."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "snakemake").write_text(f"#!/bin/sh\necho beside > {tmp_path / 'ran'}\n")
    (bin_dir / "snakemake").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert run_with_servers([], ["snakemake", "-n"], tmp_path / "services", tmp_path / "logs") == 0
    assert (tmp_path / "ran").read_text() == "beside\n"


def test_a_missing_program_is_one_line_before_any_server_starts(tmp_path: Path, capsys, monkeypatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("models:\n  tiny: {path: Qwen/Qwen2.5-0.5B-Instruct, backend: vllm}\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nothing beside it
    monkeypatch.setenv("PATH", str(tmp_path))
    args = ["with-servers", "--config", str(config), "--serve", "tiny", "--services", str(tmp_path / "services")]
    assert main([*args, "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sal with-servers: error: `true` is neither next to") and err.count("\n") == 1, err
    monkeypatch.setenv("PATH", os.defpath)
    assert main([*args, "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sal with-servers: error: `vllm` is neither next to") and "make vllm-env" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "services").exists() or not any((tmp_path / "services").iterdir())


def test_announce_names_a_missing_server_command_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["announce", "--service-file", str(tmp_path / "s.json"), "--", "no-such-server", "serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sal announce: error: `no-such-server` is neither next to") and err.count("\n") == 1, err
    assert not (tmp_path / "s.json").exists()
