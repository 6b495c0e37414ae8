"""Warm starts: `sal` steps forked from a process that has already imported torch and transformers.

On a laptop every job of a run is a new Python process, and a model job spends about 3 s importing
torch, transformers and pandas before it reads a weight: a third of a short job, a quarter of the
embedded default's CPU time. `sal warm-start -- snakemake ...` starts a *fork server* that imports
them once and listens on a Unix socket named by $SAL_WARM_START; each `sal <step>` the command runs
(Snakemake's jobs) sends the server its arguments, working folder, environment and standard streams,
and the server forks a child that runs the step there, as the step would have run itself. The client
waits, forwards SIGINT/SIGTERM/SIGHUP to the child and exits with the child's status, so Snakemake
sees an ordinary job. Nothing but the imports is shared: each child has its own memory from the fork
on, its own log (the streams are the client's) and its own thread count (OMP_NUM_THREADS as
Snakemake sets it per job). When the socket does not answer, the step runs cold, as without it.

The server never runs a torch operation or a tokenizer itself (so no thread pool exists to be broken
by a fork) and never touches CUDA. On Slurm each job is a process on some node, so this is for local
runs (`make demo` uses it), on Linux: elsewhere (macOS, where libraries may refuse to run in a
forked process) `sal warm-start` runs the command with cold steps.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sal_core.errors import ConfigError
from sal_core.hub import go_offline

#: the environment variable holding the server's socket path, set for the wrapped command
ENV = "SAL_WARM_START"
#: modules the server imports once (a missing one is skipped: an install without it runs cold for it)
PRELOAD = (
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.llama.modeling_llama",
    "transformers.models.qwen2.modeling_qwen2",
    "tokenizers",
    "pandas",
    "pyarrow.parquet",
    "math_verify",
    "sal_core.pipeline.generate",
    "sal_core.pipeline.score",
    "sal_core.pipeline.merge",
    "sal_core.evaluation.evaluate",
    "sal_core.evaluation.aggregate",
)
STREAMS = (0, 1, 2)
#: True in a step forked from the server (its log's first line says so)
FORKED = False
_HEADER = struct.Struct("!I")
_STATUS = struct.Struct("!i")


def _send_request(sock: socket.socket, payload: bytes) -> None:
    """The length (with this process's three standard streams attached), then the payload."""
    socket.send_fds(sock, [_HEADER.pack(len(payload))], list(STREAMS))
    sock.sendall(payload)


def _recv_exact(sock: socket.socket, size: int, got: bytes = b"") -> bytes:
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        got += chunk
    return got


def _recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A client's request and the three stream descriptors that came with it."""
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, len(STREAMS))
    if len(fds) != len(STREAMS):
        for fd in fds:
            os.close(fd)
        raise ConnectionError(f"expected {len(STREAMS)} stream descriptors, got {len(fds)}")
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, head))
    return json.loads(_recv_exact(sock, size)), list(fds)


def run_forwarded(path: str, argv: list[str]) -> int | None:
    """Client side: run `sal argv` in a child of the server at `path`; its exit status, or None
    when no server answers there (the caller then runs the step itself)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    with sock:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
        _send_request(sock, json.dumps(request).encode())
        (pid,) = _STATUS.unpack(_recv_exact(sock, _STATUS.size))
        with _forwarding_signals(pid):
            try:
                (status,) = _STATUS.unpack(_recv_exact(sock, _STATUS.size))
            except ConnectionError:
                print("sal: the warm-start server went away during the step", file=sys.stderr)
                return 1
    return status


@contextlib.contextmanager
def _forwarding_signals(pid: int) -> Iterator[None]:
    """While the child runs, a signal that would stop this client stops the child instead; the child's
    exit status then comes back as usual."""

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def forked() -> bool:
    """Whether this process is a step forked from the server."""
    return FORKED


def exit_status(wait_status: int) -> int:
    """A shell's exit status for a child's wait status (128 + N when signal N killed it)."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import `modules`; the names of those that could not be imported."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def serve(path: str, step: Callable[[list[str]], int], ready: Callable[[], None] = lambda: None) -> None:
    """Server side: listen on the Unix socket `path` (then call `ready`: early clients queue), import
    PRELOAD, and accept requests until SIGTERM, forking one child per request that runs `step(argv)`.
    Children are reaped and their statuses sent to their clients; a child whose client went away
    (killed outright, so it could not forward a signal) gets SIGTERM."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    ready()
    go_offline()  # the servers' children run job steps only: offline, as imported (sal_core.hub)
    preload()
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the jobs; the wrapper stops the server
    clients: dict[int, socket.socket] = {}
    with selectors.DefaultSelector() as selector, listener:
        selector.register(listener, selectors.EVENT_READ)
        while not stopping or clients:
            if stopping and listener.fileno() in selector.get_map():
                selector.unregister(listener)  # queued clients are refused once the server stops
            for key, _ in selector.select(timeout=0.05):
                if key.fileobj is not listener:  # a client hung up (it never sends twice)
                    selector.unregister(key.fileobj)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(key.data, signal.SIGTERM)
                elif not stopping:
                    conn, _ = listener.accept()
                    pid = _start_child(conn, listener, step)
                    if pid is not None:
                        clients[pid] = conn
                        selector.register(conn, selectors.EVENT_READ, pid)
            _reap(clients, selector)


def _start_child(conn: socket.socket, listener: socket.socket, step: Callable[[list[str]], int]) -> int | None:
    """Fork the child for the request on `conn`; its pid (already sent to the client), or None."""
    try:
        request, fds = _recv_request(conn)
    except (OSError, ConnectionError, ValueError) as err:
        print(f"sal warm-start: bad request ({err})", file=sys.stderr)
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        listener.close()
        conn.close()
        os._exit(_run_child(request, fds, step))
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(_STATUS.pack(pid))
    except OSError:  # the client is gone: stop what it asked for
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return pid


def _reap(clients: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    """Send each finished child's exit status to its client."""
    while clients:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = clients.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(conn)
            with contextlib.suppress(OSError):
                conn.sendall(_STATUS.pack(exit_status(wait_status)))
            conn.close()


def _run_child(request: dict[str, Any], fds: list[int], step: Callable[[list[str]], int]) -> int:
    """In the forked child: become the client's process (streams, folder, environment), run the step."""
    global FORKED
    FORKED = True
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for target, fd in zip(STREAMS, fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    # fresh stream objects over the new descriptors (the server's may wrap something else), and no
    # logging handlers from the server, so the step configures logging as a new process does
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stream, never closed
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, errors="backslashreplace", buffering=1)  # noqa: SIM115
    logging.root.handlers.clear()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(ENV, None)  # the step's own subprocesses start cold, as they would have
    go_offline()  # as the imports in the server were (clients forward job steps only, sal_core.cli)
    sys.argv = ["sal", *request["argv"]]
    _apply_thread_count()
    try:
        status = step(request["argv"])
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - a crash must still reach the client as a status
        import traceback

        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def _apply_thread_count() -> None:
    """torch read OMP_NUM_THREADS when the server imported it; apply the value this job was given."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    torch = sys.modules.get("torch")
    if torch is not None and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def socket_path(folder: Path) -> str:
    """Where the server listens: a short path (Unix socket paths are limited to about 100 bytes)."""
    return str(folder / "warm.sock")


@contextlib.contextmanager
def running_server(path: str, step: Callable[[list[str]], int]) -> Iterator[int]:
    """A forked process serving `step` at `path` (see `serve`), listening when this yields its pid;
    stopped (SIGTERM, after its children) on leaving."""
    listening, told = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the server
        os.close(listening)
        try:
            serve(path, step, ready=lambda: os.close(told))
        finally:
            os._exit(0)
    os.close(told)
    os.read(listening, 1)  # returns once the server listens (or has died)
    os.close(listening)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def run_with_warm_start(command: list[str], main: Callable[[list[str]], int]) -> int:
    """Run `command` with a fork server listening at $SAL_WARM_START, whose forks run `main` (the `sal`
    entry point, passed in so this lower module does not import the cli); stop the server afterwards
    (also when the command fails or is interrupted) and return the command's exit status."""
    if not sys.platform.startswith("linux"):  # forking after torch's import is only tested on Linux
        print("sal warm-start: Linux only; running the command with cold steps", file=sys.stderr)
        return run_command(command, dict(os.environ))
    folder = Path(tempfile.mkdtemp(prefix="sal-warm-"))
    path = socket_path(folder)
    try:
        with running_server(path, main):
            return run_command(command, {**os.environ, ENV: path})
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_command(command: list[str], env: dict[str, str]) -> int:
    """`command`'s exit status; Ctrl-C reaches it too, so this waits while it cleans up."""
    try:
        process = subprocess.Popen(command, env=env)
    except OSError as err:
        raise ConfigError(f"warm-start: cannot run {command[0]!r} ({err.strerror})") from err
    with process:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                continue
