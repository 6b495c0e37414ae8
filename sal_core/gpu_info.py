"""What the GPUs of this machine are, asked of the driver without initialising CUDA in this process.

Every decision that depends on the GPU (the dtype, whether the installed vLLM can run, how much
memory a PRM has beside the policy) reads these facts from ONE query, `nvidia_smi_rows`, which runs
`nvidia-smi --query-gpu=... --format=csv,noheader,nounits` in a child process. No torch.cuda call is
made: `torch.cuda.is_bf16_supported()` or `mem_get_info()` would initialise CUDA here before
`vllm.LLM`, and vLLM then starts its workers with `spawn` instead of `fork`
(vllm/utils/system_utils.py, `_maybe_force_spawn`). Tests replace `nvidia_smi_rows` with given rows.

Indices follow CUDA_VISIBLE_DEVICES (what CUDA numbers the job's GPUs): with "2,3", device cuda:0 is
physical GPU 2. nvidia-smi lists GPUs in PCI bus order; `visible_gpus` maps indices or UUIDs back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

#: the fields asked of nvidia-smi, in the order `parse_rows` reads them
FIELDS = ("index", "uuid", "name", "compute_cap", "memory.total", "memory.free", "driver_version")
MIB = 1024**2
#: seconds nvidia-smi may take (a hung driver must not hang a job's start)
TIMEOUT = 30


@dataclass(frozen=True)
class GPU:
    """One GPU as a job sees it: `index` is its CUDA index inside the job (cuda:N)."""

    index: int
    physical: int
    uuid: str
    name: str
    capability: tuple[int, int]
    total_bytes: int
    free_bytes: int

    @property
    def capability_text(self) -> str:
        return f"{self.capability[0]}.{self.capability[1]}"


def nvidia_smi_rows() -> list[str] | None:
    """The one query: nvidia-smi's CSV rows (FIELDS), or None when there is no nvidia-smi or it fails."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return None
    try:
        done = subprocess.run(
            [command, f"--query-gpu={','.join(FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.splitlines() if line.strip()]


@dataclass(frozen=True)
class Row:
    """One parsed nvidia-smi row (physical numbering)."""

    gpu: GPU
    driver: str


def _capability(text: str) -> tuple[int, int]:
    major, _, minor = text.strip().partition(".")
    return int(major), int(minor or 0)


def parse_rows(rows: list[str]) -> list[Row]:
    """nvidia-smi rows as GPUs in physical order; rows that do not parse (e.g. "[N/A]") are left out."""
    parsed = []
    for line in rows:
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(FIELDS):
            continue
        index, uuid, name, cap, total, free, driver = cells
        try:
            gpu = GPU(int(index), int(index), uuid, name, _capability(cap), int(total) * MIB, int(free) * MIB)
        except ValueError:
            continue
        parsed.append(Row(gpu, driver))
    return parsed


def _visible(rows: list[Row], env: str | None) -> list[GPU]:
    """The GPUs CUDA_VISIBLE_DEVICES (`env`) lets the job see, renumbered from 0 as CUDA numbers them."""
    if env is None:
        chosen = [row.gpu for row in rows]
    else:
        by_key = {str(row.gpu.physical): row.gpu for row in rows} | {row.gpu.uuid: row.gpu for row in rows}
        chosen = []
        for key in (part.strip() for part in env.split(",")):
            gpu = by_key.get(key) or next((r.gpu for r in rows if key and r.gpu.uuid.startswith(key)), None)
            if gpu is None:  # CUDA stops at the first entry it cannot resolve ("-1", "")
                break
            chosen.append(gpu)
    return [GPU(i, g.physical, g.uuid, g.name, g.capability, g.total_bytes, g.free_bytes) for i, g in enumerate(chosen)]


@cache
def _rows() -> tuple[Row, ...]:
    """The query, parsed, once per process (a GPU's model and driver do not change during a job)."""
    return tuple(parse_rows(nvidia_smi_rows() or []))


def visible_gpus() -> list[GPU]:
    """The GPUs this job may use (CUDA_VISIBLE_DEVICES applied), numbered as CUDA numbers them;
    empty when the driver cannot be asked (no nvidia-smi: no NVIDIA GPU, or a node without tools)."""
    return _visible(list(_rows()), os.environ.get("CUDA_VISIBLE_DEVICES"))


#: files an NVIDIA kernel driver leaves on a node (also inside containers that pass GPUs through)
DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl")


def driver_loaded() -> bool:
    """Whether this node has an NVIDIA driver at all, even where nvidia-smi is missing (a container
    given GPUs without the tools); read from files the driver leaves, without initialising CUDA."""
    return any(os.path.exists(path) for path in DRIVER_FILES)


def driver_version() -> str | None:
    """The NVIDIA driver's version ("580.65.06"), or None when nvidia-smi cannot say."""
    rows = _rows()
    return rows[0].driver if rows else None


def free_bytes(index: int) -> int | None:
    """Free memory now of visible GPU `index`, asked again (free memory changes, the rest does not)."""
    rows = parse_rows(nvidia_smi_rows() or [])
    gpus = _visible(rows, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return gpus[index].free_bytes if index < len(gpus) else None


def forget() -> None:
    """Drop the cached query (tests that change the faked answer)."""
    _rows.cache_clear()
