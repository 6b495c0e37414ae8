"""Which GPUs a local job may use: one lock file per GPU, held for the job's lifetime.

Snakemake's local executor hands out no device ids (its `gpu` resource only counts), so two jobs on a
multi-GPU workstation would both land on GPU 0. A `sal` step that needs k GPUs instead takes k free
ones at its start: an exclusive `flock` on `<SAL_GPU_LOCKS>/gpu-<id>.lock` each, then sets
CUDA_VISIBLE_DEVICES to them for itself and its children (vLLM's workers) before torch or vLLM touch
CUDA. The kernel drops a lock when the last process holding its file closes, so a job killed outright
(SIGKILL) frees its GPUs once it and the engine processes it forked are gone; no stale file blocks.

Under Slurm (SLURM_JOB_ID set) Slurm has already bound the job's GPUs through CUDA_VISIBLE_DEVICES and
nothing is locked; a job that needs more than it was given fails in one line.

The GPUs one may hand out are `visible_gpus()`: CUDA_VISIBLE_DEVICES when set (the usual way to keep
a run off a colleague's GPUs), else the machine's, asked of `nvidia-smi` (never of CUDA: initialising
it before vLLM starts switches vLLM's workers to spawn). Tests fake them through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sal_core.errors import ConfigError
from sal_core.gpu_info import nvidia_smi_rows, parse_rows

log = logging.getLogger(__name__)

#: the folder of the lock files (default: sal-gpu-locks in the temporary folder, one per machine)
LOCKS_ENV = "SAL_GPU_LOCKS"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
#: seconds between two tries while the GPUs a job needs are held by other jobs
POLL_S = 2.0
#: seconds between two log lines naming the holders while a job waits
WAIT_NOTE_S = 60.0


def under_slurm() -> bool:
    """Whether this process is a Slurm job's, whose GPUs Slurm binds itself."""
    return bool(os.environ.get("SLURM_JOB_ID"))


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES's entries when it is set (empty: none),
    else the machine's GPUs by their nvidia-smi index (none without it), from the one driver query
    (sal_core.gpu_info)."""
    if VISIBLE_ENV in os.environ:
        return [entry.strip() for entry in os.environ[VISIBLE_ENV].split(",") if entry.strip()]
    return [str(row.gpu.physical) for row in parse_rows(nvidia_smi_rows() or [])]


def local_gpu_count(declared: int | None) -> int:
    """The GPUs a local run's jobs may hold at once: Snakemake's `gpu` resource where declared
    (profiles/default, `--resources gpu=N`), else every GPU this machine shows that nobody holds now
    (the servers of `sal with-servers` hold theirs while the run is parsed). Declaring more than it
    shows would have Snakemake start two jobs for one GPU: one line, before any job."""
    shown = visible_gpus()
    if declared is None:
        return len(free_gpus(shown))
    if declared > len(shown):
        raise ConfigError(
            f"resources gpu={declared}: this machine shows {len(shown)} GPU(s) ({', '.join(shown) or 'none'}; "
            f"{VISIBLE_ENV} or nvidia-smi), so jobs would share one: declare at most {len(shown)} "
            "(profiles/default `resources: gpu:`)"
        )
    return declared


def locks_folder() -> Path:
    """Where the lock files live: $SAL_GPU_LOCKS, else one folder per machine in the temporary folder,
    open to every user (locks coordinate all the runs on the machine)."""
    folder = Path(os.environ.get(LOCKS_ENV) or Path(tempfile.gettempdir()) / "sal-gpu-locks")
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        if LOCKS_ENV not in os.environ:  # shared, like /tmp: anyone may add a lock file, only its owner remove it
            with contextlib.suppress(PermissionError):  # another user made it first
                folder.chmod(0o1777)
    return folder


def _lock_path(folder: Path, gpu: str) -> Path:
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock"


def _open_lock(path: Path) -> tuple[int, bool]:
    """A descriptor of the lock file (created readable and writable by all), and whether it is writable
    (a file another user created read-only is still lockable, but its holder note stays theirs)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY), False
    with contextlib.suppress(PermissionError):  # another user's file keeps its mode
        os.fchmod(fd, 0o666)
    return fd, True


def holder(path: Path) -> str:
    """Who holds the lock file, as its last holder wrote it (pid and command)."""
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@dataclass
class Claim:
    """GPUs held by this process: the ids (in the job's order) and the lock files' descriptors."""

    gpus: list[str]
    descriptors: list[int] = field(default_factory=list)
    #: whether the GPUs were locked here (False: Slurm's, or a machine without GPUs)
    locked: bool = True

    def release(self) -> None:
        """Give the GPUs back now (a step's process gives them back when it exits)."""
        for fd in self.descriptors:
            os.close(fd)
        self.descriptors = []


def free_gpus(pool: list[str]) -> list[str]:
    """The GPUs of `pool` whose lock nobody holds now (each tried and let go at once)."""
    if not pool:
        return []
    folder, free = locks_folder(), []
    for gpu in pool:
        fd, _ = _open_lock(_lock_path(folder, gpu))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free.append(gpu)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
    return free


def try_claim(count: int, pool: list[str], what: str) -> tuple[Claim | None, list[str]]:
    """Lock `count` free GPUs of `pool`, lowest first: the claim, or None and the busy ids."""
    folder = locks_folder()
    claim, busy = Claim([]), []
    for gpu in pool:
        if len(claim.gpus) == count:
            break
        fd, writable = _open_lock(_lock_path(folder, gpu))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            busy.append(gpu)
            continue
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {what}\n".encode(), 0)
        claim.gpus.append(gpu)
        claim.descriptors.append(fd)
    if len(claim.gpus) < count:
        claim.release()
        return None, busy
    return claim, busy


def hold_gpus(count: int, what: str, key: str, wait: bool = True) -> Claim:
    """Lock `count` of the visible GPUs for this process (its CUDA_VISIBLE_DEVICES unchanged; see
    claim_gpus). `key` names the setting that asks for them in the one-line errors. While other jobs
    hold them, wait (`wait`, logging the holders once a minute) or fail in one line. Under Slurm, or
    on a machine without GPUs, nothing is locked (`locked` false): the process keeps what it was
    given, checked against `count`."""
    pool = visible_gpus()
    if under_slurm() or not pool:
        if count > len(pool) and pool:
            raise ConfigError(
                f"{key}: needs {count} GPUs, this Slurm job has {len(pool)} ({VISIBLE_ENV}={','.join(pool)}): "
                f"ask Slurm for {count} (the rule's gpu resource) or lower {key}"
            )
        return Claim(pool, locked=False)
    if count > len(pool):
        raise ConfigError(
            f"{key}: needs {count} GPUs, this machine shows {len(pool)} ({', '.join(pool)}; {VISIBLE_ENV} or "
            f"nvidia-smi): lower {key}"
        )
    noted = 0.0
    while True:
        claim, busy = try_claim(count, pool, what)
        if claim is not None:
            return claim
        holders = "; ".join(f"GPU {gpu}: {holder(_lock_path(locks_folder(), gpu))}" for gpu in busy)
        if not wait:
            raise ConfigError(
                f"{key}: needs {count} free GPU(s), {len(busy)} of the {len(pool)} are held ({holders}): "
                f"stop those or set {VISIBLE_ENV} to GPUs that are free"
            )
        if time.monotonic() - noted >= WAIT_NOTE_S:
            log.info("waiting for %d free GPU(s) of %d (%s)", count, len(pool), holders)
            noted = time.monotonic()
        time.sleep(POLL_S)


def claim_gpus(count: int, what: str, key: str, wait: bool = True) -> Claim:
    """hold_gpus, then make the GPUs this process's CUDA_VISIBLE_DEVICES (and so its children's, vLLM's
    workers): a job's own GPUs, in order, before torch or vLLM touch CUDA."""
    claim = hold_gpus(count, what, key, wait)
    if claim.locked:
        os.environ.update(visible_env(claim.gpus))
        log.info("GPUs: %s (%s)", ", ".join(claim.gpus) or "none", f"{VISIBLE_ENV}={os.environ[VISIBLE_ENV]}")
    return claim


def visible_env(gpus: list[str]) -> dict[str, str]:
    """The variables that show a process exactly `gpus`. Ids that came from nvidia-smi are its indexes,
    in PCI bus order, which CUDA follows only when told (CUDA_DEVICE_ORDER; its default puts the
    fastest first): the GPU a lock names is then the one nvidia-smi shows under that index."""
    env = {VISIBLE_ENV: ",".join(gpus)}
    if VISIBLE_ENV not in os.environ:
        env["CUDA_DEVICE_ORDER"] = os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


def step_description() -> str:
    """This process, for the holder note of its lock files: its command line, shortened."""
    text = " ".join(Path(sys.argv[0]).name if i == 0 else arg for i, arg in enumerate(sys.argv))
    return text if len(text) <= 200 else text[:197] + "..."
