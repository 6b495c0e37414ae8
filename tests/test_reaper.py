"""The reaper (backends/reaper.py) without vLLM: a job that starts it, then an "engine" (a child with a
worker of its own, as vLLM's EngineCore starts its Workers), is killed by SIGKILL while the engine starts:
engine and worker are stopped, a process the job had before the reaper is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from sal_core.backends import reaper

REPO = Path(__file__).resolve().parent.parent
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
ENGINE = [sys.executable, "-c", f"import subprocess, time; subprocess.Popen({SLEEPER!r}); time.sleep(120)"]
JOB = textwrap.dedent(f"""
    import subprocess, sys, time
    from sal_core.backends import reaper
    old = subprocess.Popen({SLEEPER!r})
    watcher = reaper.watch()
    time.sleep(float(sys.argv[1]))  # the engine's start begins after the reaper's first look
    engine = subprocess.Popen({ENGINE!r})
    if sys.argv[2] == "settle":
        time.sleep(1.0)
        reaper.settled(watcher)
    print(old.pid, engine.pid, flush=True)
    if sys.argv[2] == "release":
        time.sleep(1.0)
        reaper.release(watcher)
        print("released", flush=True)
    time.sleep(120)
""")


def run_job(*args: str) -> tuple[subprocess.Popen, psutil.Process, list[psutil.Process]]:
    """The job, the process it had before the reaper, and its engine with the engine's worker."""
    job = subprocess.Popen([sys.executable, "-c", JOB, *args], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    old, engine = (psutil.Process(int(pid)) for pid in job.stdout.readline().split())
    deadline = time.monotonic() + 10
    while not engine.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return job, old, [engine, *engine.children()]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(processes: list[psutil.Process], within: float = 3 * reaper.GRACE) -> bool:
    deadline = time.monotonic() + within
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in processes)


def test_a_job_killed_while_its_engine_starts_leaves_no_engine_process() -> None:
    job, old, engine = run_job("0.5", "running")
    assert len(engine) == 2, "the engine's worker never started"
    time.sleep(3 * reaper.POLL)  # the reaper has had its look
    job.send_signal(signal.SIGKILL)
    job.wait()
    try:
        assert gone(engine), [p.cmdline() for p in engine if alive(p)]
        assert alive(old), "a process the job had before the reaper was stopped"
    finally:
        old.kill()


def test_after_settling_the_engines_later_children_are_still_stopped() -> None:
    """Settled, the reaper records nothing new; a worker started below the recorded engine still goes."""
    job, old, engine = run_job("0.0", "settle")
    job.send_signal(signal.SIGKILL)
    job.wait()
    try:
        assert gone(engine)
    finally:
        old.kill()


def test_release_stops_what_is_left_and_ends_the_reaper() -> None:
    job, old, engine = run_job("0.5", "release")
    try:
        assert job.stdout.readline().strip() == "released"
        assert gone(engine, within=0.1)  # release returns once the reaper has stopped them
        left = [p for p in psutil.Process(job.pid).children() if alive(p)]
        assert [p for p in left if "reaper.py" in " ".join(p.cmdline())] == []
    finally:
        job.kill()
        job.wait()
        old.kill()
