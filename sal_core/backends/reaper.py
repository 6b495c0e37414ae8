"""Engine processes stopped when the job that started them ends, however it ends, from before the
engine starts.

vLLM runs its engine in child processes (`VLLM::EngineCore`, which starts `VLLM::Worker`s and stops
them when it exits). The engine core does not notice when the process that started it dies: a `sal
generate` job killed by SIGTERM or SIGKILL (a cancelled run, a Slurm time limit) left both running,
holding the KV cache's memory and burning cores (measured on vLLM 0.32's CPU build), and where Slurm
has no cgroups nobody else stops them. A job can be killed during the engine's start-up too (a
minute or more of loading and compiling on a GPU), so the reaper starts BEFORE `vllm.LLM()`:

- `watch()` starts a small reaper process holding the read end of a pipe whose write end only the job
  holds, with the job's pid and start time and the processes it has now (left alone), and returns
  once the reaper says it is watching (under a loaded machine its start takes seconds, which a kill
  right after the engine's start must not fall into);
- until told the engine is up (`settled`), the reaper polls the job's descendants every POLL seconds
  and records each new one (pid and start time);
- when the pipe reads end-of-file (the job is gone, or it shut the engine down and `release`d the
  reaper), the reaper stops every recorded process still alive and whatever runs below them now
  (SIGTERM, then SIGKILL after GRACE seconds). A process is named by pid and start time, so a pid
  reused in the meantime is left alone.

A process the engine starts in the last POLL seconds before the job is killed may be missed, unless
it is a child of one recorded (a Worker of the EngineCore): those are found at the end.

Run as a script, `python reaper.py JOB_PID:START [PID:START ...]` (the job, then the processes it had
before: never recorded), with the pipe on its standard input: it imports nothing
of the project (no `sal_core` of another checkout in the job's folder can shadow it).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterable

#: seconds the engine's processes get to exit after SIGTERM before SIGKILL
GRACE = 5.0
#: seconds between two looks at the job's descendants while the engine starts
POLL = 0.2
#: what the job writes to the pipe once the engine is up: no more new processes to record
SETTLED = b"settled\n"

Named = tuple[int, float]


def watch() -> subprocess.Popen:
    """Start the reaper for this process's future descendants; it acts once this process has ended or
    closed the returned process's stdin (`release`)."""
    import psutil

    me = psutil.Process()
    job = (me.pid, me.create_time())
    named = [f"{pid}:{started!r}" for pid, started in [job, *descendants(*job)]]  # the job, then what it has now
    reaper = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *named],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C to the job's process group reaches the job, not the reaper
    )
    reaper.stdout.readline()  # type: ignore[union-attr]  # it is watching (or gone): the engine may start
    reaper.stdout.close()  # type: ignore[union-attr]
    return reaper


def settled(reaper: subprocess.Popen | None) -> None:
    """The engine is up: the reaper stops recording (what the engine starts later runs below it)."""
    if reaper is not None and reaper.stdin is not None:
        reaper.stdin.write(SETTLED)
        reaper.stdin.flush()


def release(reaper: subprocess.Popen | None) -> None:
    """After the engine was shut down in order (or failed to start): end the reaper, which stops
    whatever it recorded that is still alive."""
    if reaper is not None and reaper.stdin is not None:
        reaper.stdin.close()
        reaper.wait()


def descendants(pid: int, started: float) -> set[Named]:
    """(pid, start time) of every process below `pid`, if that process is still the one started then."""
    import psutil

    try:
        parent = psutil.Process(pid)
        if abs(parent.create_time() - started) >= 0.01:
            return set()
        children = parent.children(recursive=True)
    except psutil.Error:
        return set()
    found = set()
    for child in children:
        try:
            found.add((child.pid, child.create_time()))
        except psutil.Error:
            continue
    return found


def stop(processes: Iterable[Named], grace: float = GRACE) -> None:
    """SIGTERM each process still alive with its recorded start time and everything below it, then
    SIGKILL the ones left."""
    import psutil

    targets = set(processes)
    for pid, started in list(targets):
        targets |= descendants(pid, started)
    alive = []
    for pid, started in targets:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 0.01 and pid != os.getpid():
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


def record_until_end(job: Named, before: set[Named], pipe: int, poll: float = POLL) -> set[Named]:
    """The job's descendants but those `before`, recorded every `poll` seconds until SETTLED (then
    only waiting) and until the pipe reads end-of-file."""
    recorded: set[Named] = set()
    recording, received = True, b""
    while True:
        if recording:
            recorded |= {p for p in descendants(*job) if p not in before and p[0] != os.getpid()}
        ready, _, _ = select.select([pipe], [], [], poll if recording else None)
        if ready:
            chunk = os.read(pipe, 4096)
            if not chunk:
                return recorded
            received += chunk
            recording = SETTLED not in received


def main(argv: list[str]) -> int:
    """argv: the job's PID:START, then those of the processes it had when it started the reaper."""
    named = [(int(pid), float(started)) for pid, _, started in (item.partition(":") for item in argv)]
    import psutil  # noqa: F401  # loaded before the job goes on: the first look comes at once

    print("watching", flush=True)
    recorded = record_until_end(named[0], set(named[1:]), sys.stdin.fileno())
    stop(recorded)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
