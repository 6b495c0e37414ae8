"""`sal with-servers`: model and PRM servers started around one command (a Snakemake run), then stopped.

The servers serve the in-process entries of a workflow config: a `models:` entry with backend
`transformers` runs `sal serve`, one with backend `vllm` runs `vllm serve` (through `sal announce`,
which gives it a service file), a `prms:` entry runs `sal serve-prm`, or, named with `--serve-vllm`,
`vllm serve --runner pooling` (Qwen2.5-Math-PRM, read by `api: vllm-pooling`; serving/vllm_prm.py). Each
is served under its entry's name, writes SERVICES/<name>.json once it answers, and logs to
LOGS/<name>.log. On this machine they are child processes; with `--sbatch FLAGS` each is a Slurm job
(`sbatch FLAGS --wrap ...`, listening on all interfaces, service files on the shared file system). Once
all answer, the command runs; then every server is stopped (SIGTERM, or `scancel`), also when the
command fails or is interrupted: the seed's hand-made cleanup job, done by the one command that needs
the servers.

The servers are closed to strangers: each run makes a fresh random key, hands it to the servers and to
the command through the environment only (RUN_KEY_ENV; `vllm serve` reads VLLM_API_KEY), never through a
command line, a service file or a log, and the clients send it (backends/http_client.py)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sal_core.backends.http_client import RUN_KEY_ENV
from sal_core.backends.vllm_engine import NO_TRACKING, expect_cpu_build, serve_arguments
from sal_core.device_locks import visible_env
from sal_core.errors import ConfigError, ServerError
from sal_core.executable import find_program, interpreter_folder_first
from sal_core.hub import offline_env, staged
from sal_core.job_devices import hold_server_gpus
from sal_core.serving.launch import sal_argv, spawn, stop_server, wait_for_service
from sal_core.serving.vllm_auth import KEY_ENV, middleware_args
from sal_core.serving.vllm_prm import pooling_command
from sal_core.settings.grid import model_placement, named_settings
from sal_core.settings.jobs import ModelSettings, PRMSettings

log = logging.getLogger(__name__)

#: Slurm job states in which a server job may still come up
LIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "RESIZING")
#: the server kinds that are a `vllm serve` (behind `sal announce`)
VLLM_KINDS = ("vllm", "vllm-pooling")
#: seconds a stopped server job may take to leave the queue (Slurm's KillWait is 30 s by default)
STOP_WAIT = 60.0
#: seconds between two `squeue` calls for one server job while waiting for it (squeue is slow on big clusters)
STATE_POLL = 2.0


def vllm_command(settings: ModelSettings, cpu: bool = False) -> list[str]:
    """`vllm serve` for a `backend: vllm` entry, with the settings the in-process engine would use
    (backends.vllm_engine; `cpu`: vLLM's CPU build serves it), closed with the run's key on every route
    (serving/vllm_auth.py)."""
    return ["vllm", "serve", settings.path, *serve_arguments(settings, cpu), *middleware_args()]


@dataclass(frozen=True)
class ServerSpec:
    """One server to start: a models: or prms: entry of a workflow config, in process."""

    name: str
    #: "serve" (transformers), "vllm", "serve-prm", or "vllm-pooling" (a PRM behind `vllm serve`)
    kind: str
    settings: ModelSettings | PRMSettings
    #: the folder to build first (`prepare:` entries), and its prepare source
    prepare: tuple[str, str] | None = None

    def argv(self, service_file: str | Path, host: str | None = None) -> list[str]:
        """The server's command line, writing `service_file` once it answers."""
        if self.kind in VLLM_KINDS:
            where = ["--service-file", str(service_file), *(["--host", host] if host else [])]
            announce = [sys.executable, "-m", "sal_core.cli", "announce", *where, "--"]
            # a server job (--sbatch, host given) runs on a GPU node; here, vLLM is whichever build is installed
            cpu = host is None and expect_cpu_build()
            if self.kind == "vllm-pooling":  # a Hub checkpoint is served from its staged snapshot (sal_core.hub)
                return announce + pooling_command(staged(self.settings, "prms"), cpu, f"--serve-vllm {self.name}")  # type: ignore[arg-type]
            return announce + vllm_command(staged(self.settings, "models"), cpu)  # type: ignore[arg-type]
        flag = "--model" if self.kind == "serve" else "--prm"
        args = [flag, json.dumps(asdict(self.settings)), "--api-key-env", RUN_KEY_ENV]
        return sal_argv(self.kind, args, service_file, host)

    def env(self, key: str) -> dict[str, str]:
        """The variables that hand the server its key: `sal serve` reads the one --api-key-env names,
        `vllm serve` VLLM_API_KEY (not --api-key, which `ps` would show); vLLM also its opt-outs of
        usage reporting, and the Hub's offline switches (docs/offline.md)."""
        vllm = {KEY_ENV: key, **NO_TRACKING, **offline_env()}  # `sal` steps go offline themselves
        return vllm if self.kind in VLLM_KINDS else {RUN_KEY_ENV: key}


def server_specs(config: dict[str, Any], names: Sequence[str], vllm_prms: Sequence[str] = ()) -> list[ServerSpec]:
    """The servers for entries `names` of a workflow config, and for the PRM entries `vllm_prms`
    behind `vllm serve`, checked before anything starts."""
    if clash := set(names) & set(vllm_prms):
        raise ConfigError(f"--serve and --serve-vllm both name {', '.join(sorted(clash))}: serve each entry once")
    prepared: dict[str, str] = {}
    prms = named_settings(config, "prms", PRMSettings, prepared, False)
    models = named_settings(model_placement(config)[0], "models", ModelSettings, prepared, True)
    entries = {**{n: ("serve-prm", s) for n, s in prms.items()}, **{n: ("serve", s) for n, s in models.items()}}
    specs = []
    for name in vllm_prms:
        if name not in prms:
            raise ConfigError(f"--serve-vllm {name}: not an entry of the config's prms (those: {', '.join(prms)})")
        pooling_command(prms[name], False, f"--serve-vllm {name}")  # refuses other families here
        specs.append(ServerSpec(name, "vllm-pooling", prms[name]))
    for name in names:
        if name not in entries:
            raise ConfigError(
                f"--serve {name}: not an entry of the config's models or prms (those: {', '.join(entries)})"
            )
        kind, settings = entries[name]
        if settings.served:
            raise ConfigError(f"--serve {name}: is itself served; name an entry that loads its weights")
        if kind == "serve" and settings.backend == "vllm":
            kind = "vllm"
        prepare = (settings.path, prepared[settings.path]) if settings.path in prepared else None
        specs.append(ServerSpec(name, kind, settings, prepare))
    return specs


@dataclass
class Started:
    """A server on its way up: how to tell it died, and how to stop it."""

    spec: ServerSpec
    service_file: Path
    log_path: Path
    ended: Callable[[], str | None]
    stop: Callable[[], None]
    #: why it is not running yet (a Slurm job waiting in the queue), None once it runs
    queued: Callable[[], str | None] = lambda: None


def start_local(spec: ServerSpec, service_file: Path, log_path: Path, env: dict[str, str]) -> Started:
    """A server as a child process, on GPUs of its own on a machine with several (locked as a local
    job's are, sal_core.job_devices; its CUDA_VISIBLE_DEVICES), given back once it has stopped."""
    gpus = hold_server_gpus(spec.name, spec.settings)
    if gpus.locked:
        env = {**env, **visible_env(gpus.gpus)}
        log.info("server of %s on GPUs: %s", spec.name, ", ".join(gpus.gpus) or "none")
    process = spawn(spec.argv(service_file), service_file, log_path, env)

    def ended() -> str | None:
        return None if process.poll() is None else f"exited with {process.returncode}"

    def stop() -> None:
        stop_server(process)
        gpus.release()

    return Started(spec, service_file, log_path, ended, stop)


def start_slurm(spec: ServerSpec, service_file: Path, log_path: Path, env: dict[str, str], flags: str) -> Started:
    """`sbatch FLAGS --wrap SERVER` (listening on all interfaces); ServerError when sbatch refuses."""
    service_file.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    wrap = shlex.join(spec.argv(service_file, host="0.0.0.0"))
    argv = ["sbatch", "--parsable", f"--job-name=sal-server-{spec.name}", f"--output={log_path}", *shlex.split(flags)]
    submitted = subprocess.run([*argv, f"--wrap={wrap}"], capture_output=True, text=True, env=env)
    if submitted.returncode != 0:
        raise ServerError(f"sbatch refused the server of {spec.name}: {submitted.stderr.strip()}")
    job = submitted.stdout.strip().split(";")[0]
    log.info("server of %s submitted as Slurm job %s", spec.name, job)
    status = _polled(job, STATE_POLL)

    def ended() -> str | None:
        state = status()[0]
        return None if state in LIVE_STATES else f"(Slurm job {job}) is {state or 'gone'}"

    def queued() -> str | None:
        state, reason = status()
        return f"Slurm job {job} {state}, reason {reason}" if state in ("PENDING", "REQUEUED") else None

    def stop() -> None:
        """scancel, then wait (bounded) until the job has left the queue: like a local server's stop,
        it returns once the server is gone and has removed its service file on the SIGTERM."""
        subprocess.run(["scancel", job], check=False)
        deadline = time.monotonic() + STOP_WAIT
        while _slurm_state(job) in (*LIVE_STATES, "COMPLETING") and time.monotonic() < deadline:
            time.sleep(0.5)

    return Started(spec, service_file, log_path, ended, stop, queued)


def _slurm_status(job: str) -> tuple[str, str]:
    """The job's state and reason in `squeue` (empty once it has left the queue)."""
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True).stdout.split()
    return (out[0], " ".join(out[1:])) if out else ("", "")


def _slurm_state(job: str) -> str:
    """The job's state in `squeue` (empty once it has left the queue)."""
    return _slurm_status(job)[0]


def _polled(job: str, seconds: float) -> Callable[[], tuple[str, str]]:
    """`_slurm_status(job)`, asked again only after `seconds`."""
    last: list[Any] = [-seconds, ("", "")]

    def status() -> tuple[str, str]:
        if time.monotonic() - last[0] >= seconds:
            last[:] = [time.monotonic(), _slurm_status(job)]
        return last[1]

    return status


def check_programs(
    specs: Sequence[ServerSpec], command: Sequence[str], sbatch: str | None, env: dict[str, str]
) -> None:
    """Every program the run starts is there (beside this interpreter or on PATH), before any server
    starts: one line naming a missing one (sal_core.executable)."""
    needed = [command[0]] + (["sbatch"] if sbatch is not None else [])
    needed += ["vllm"] if any(spec.kind in VLLM_KINDS for spec in specs) else []  # a Slurm job has this PATH too
    for name in needed:
        find_program(name, env)


def prepare_folders(specs: Sequence[ServerSpec]) -> None:
    """Build the prepared model folders the servers load (as the prepare_model rule would)."""
    from sal_core.pipeline.prepare_model import prepare_model

    for spec in specs:
        if spec.prepare and not (Path(spec.prepare[0]) / "config.json").is_file():
            log.info("building %s into %s first", spec.prepare[1], spec.prepare[0])
            prepare_model(spec.prepare[1], spec.prepare[0])


def run_with_servers(
    specs: Sequence[ServerSpec],
    command: Sequence[str],
    services: Path,
    logs: Path,
    threads: int = 1,
    sbatch: str | None = None,
    timeout: float = 1800.0,
) -> int:
    """Start the servers (on Slurm with `sbatch` flags), run `command` once all answer, and stop the
    servers whatever happens (failure, Ctrl-C); the command's exit status."""
    key = secrets.token_urlsafe(32)  # this run's: the servers require it, the command's clients send it
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", RUN_KEY_ENV: key}
    interpreter_folder_first(env)  # vllm, sal, snakemake: those beside this Python first
    check_programs(specs, command, sbatch, env)
    prepare_folders(specs)
    services, logs = services.resolve(), logs.resolve()
    started: list[Started] = []
    previous = _on_sigterm(_terminated)
    try:
        for spec in specs:  # all load at once
            service, log_path = services / f"{spec.name}.json", logs / f"{spec.name}.log"
            if sbatch is None:
                started.append(start_local(spec, service, log_path, {**env, **spec.env(key)}))
            else:
                started.append(start_slurm(spec, service, log_path, {**env, **spec.env(key)}, sbatch))
        for server in started:
            what = f"the server of {server.spec.name}"
            record = wait_for_service(server.service_file, server.ended, what, server.log_path, timeout, server.queued)
            log.info("%s answers at %s (log %s)", what, record["url"], server.log_path)
        return run_command(command, {**os.environ, "PATH": env["PATH"], RUN_KEY_ENV: key})
    finally:
        _on_sigterm(signal.SIG_IGN)  # a second SIGTERM must not cut the stopping short
        for server in reversed(started):
            server.stop()
            log.info("stopped the server of %s", server.spec.name)
        _on_sigterm(previous)


def run_command(command: Sequence[str], env: dict[str, str]) -> int:
    """The command's exit status; a SIGTERM meanwhile (scancel, a job's time limit) is passed on to it,
    so Snakemake cancels its own jobs, and the servers are stopped once it has exited."""
    process = subprocess.Popen(list(command), env=env)
    _on_sigterm(lambda signum, _frame: process.send_signal(signum))
    try:
        return process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise


def _terminated(signum: int, _frame: Any) -> None:
    """SIGTERM while the servers start: leave through the `finally` that stops them."""
    raise SystemExit(128 + signum)


def _on_sigterm(handler: Any) -> Any:
    """Install a SIGTERM handler (the main thread only can); the previous one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)
