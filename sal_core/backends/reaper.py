"""Engine processes stopped when the job that started them ends, however it ends.

vLLM runs its engine in child processes (`VLLM::EngineCore`, which starts `VLLM::Worker`s and stops
them when it exits). The engine core does not notice when the process that started it dies: a `sal
generate` job killed by SIGTERM or SIGKILL (a cancelled run, a Slurm time limit) left both running,
holding the KV cache's memory and burning cores (measured on vLLM 0.32's CPU build). So, once the
engine has started, `watch` starts a small reaper process that holds the read end of a pipe whose
write end only the job holds: when the job's process is gone, the pipe reads end-of-file and the
reaper stops the engine's processes (SIGTERM, then SIGKILL after GRACE seconds). Processes are named
by pid and start time, so a pid reused in the meantime is left alone.

Run as a script, `python reaper.py PID:START ...`, with the pipe on its standard input: it imports
nothing of the project (no `sal_core` of another checkout in the job's folder can shadow it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

#: seconds the engine's processes get to exit after SIGTERM before SIGKILL
GRACE = 5.0


def descendants() -> list[tuple[int, float]]:
    """(pid, start time) of every process below this one."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            found.append((child.pid, child.create_time()))
        except psutil.Error:
            continue
    return found


def watch(processes: Sequence[tuple[int, float]]) -> subprocess.Popen | None:
    """Start the reaper for `processes`; it acts once this process has ended (None: nothing to watch).
    The returned process's stdin is the pipe: closing it (see `release`) lets the reaper go idle-free."""
    if not processes:
        return None
    args = [f"{pid}:{started!r}" for pid, started in processes]
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the job's process group reaches the job, not the reaper
    )


def release(reaper: subprocess.Popen | None) -> None:
    """After the engine was shut down in order: end the reaper (whatever it finds alive, it stops)."""
    if reaper is not None and reaper.stdin is not None:
        reaper.stdin.close()
        reaper.wait()


def stop(processes: Sequence[tuple[int, float]], grace: float = GRACE) -> None:
    """SIGTERM each process still alive with its recorded start time, then SIGKILL the ones left."""
    import psutil

    alive = []
    for pid, started in processes:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 0.01:
                proc.send_signal(signal.SIGTERM)
                alive.append(proc)
        except psutil.Error:
            continue
    _gone, left = psutil.wait_procs(alive, timeout=grace)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            continue


def main(argv: Sequence[str]) -> int:
    processes = []
    for item in argv:
        pid, _, started = item.partition(":")
        processes.append((int(pid), float(started)))
    sys.stdin.buffer.read()  # returns at end-of-file: the job closed the pipe, or it ended
    stop(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
