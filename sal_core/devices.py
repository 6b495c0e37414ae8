"""Where a model runs and at which precision: one rule for policy models and PRMs, on both engines.

The precision rule (`dtype_name`) reads the GPU's compute capability from `sal_core.gpu_info` (the
driver, through nvidia-smi), never from torch.cuda: `torch.cuda.is_bf16_supported()` answers True on
a T4 (compute capability 7.5) because it counts emulation, where vLLM refuses bfloat16, and it
initialises CUDA before `vllm.LLM` (which then starts its workers with `spawn`).
"""

from __future__ import annotations

import logging
from typing import Any

from sal_core.constants import DTYPES
from sal_core.errors import ConfigError
from sal_core.settings.build import require_one_of

log = logging.getLogger(__name__)

#: the first compute capability with bfloat16 in hardware (Ampere, sm_80): below it vLLM refuses
#: bfloat16 and torch emulates it
BF16_CAPABILITY = (8, 0)


def resolve_device(device: str, key: str) -> Any:
    """'auto' picks the first CUDA GPU when there is one, else the CPU; anything else must be a
    torch device string. `key` names the config setting in errors (`model.device`, `prm.device`).
    Devices are counted through NVML (`torch.cuda.device_count`), not `torch.cuda.is_available()`,
    whose default calls cuInit in this process, after which a forked child cannot use CUDA."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.device_count() > 0 else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"{key}: {device!r} is not a torch device ({err})") from err


def dtype_name(dtype: str, device_type: str, capability: tuple[int, int] | None, key: str) -> str:
    """The dtype a model runs in: 'auto' is float32 on CPU (half-precision matmuls are slower there and
    less reproducible), bfloat16 on GPUs of compute capability >= 8.0 and float16 below (as vLLM's own
    'auto' picks for bfloat16 checkpoints there). bfloat16 asked of an older GPU is one ConfigError
    naming `key`. `capability` None on a GPU: the driver could not be asked; 'auto' is then float16."""
    require_one_of(dtype, DTYPES, key)
    if device_type != "cuda":
        return "float32" if dtype == "auto" else dtype
    if capability is None:
        if dtype == "auto":
            log.warning("%s: auto is float16 (the GPU's compute capability is unknown: no nvidia-smi)", key)
            return "float16"
        return dtype
    has_bf16 = capability >= BF16_CAPABILITY
    if dtype == "bfloat16" and not has_bf16:
        raise ConfigError(
            f"{key}: bfloat16 needs a GPU of compute capability 8.0 or newer, this one has "
            f"{capability[0]}.{capability[1]}: set {key} to float16 (or auto), or float32 if float16 overflows"
        )
    if dtype != "auto":
        return dtype
    return "bfloat16" if has_bf16 else "float16"


def gpu_capability(index: int | None = None) -> tuple[int, int] | None:
    """Compute capability of visible GPU `index` (None: the lowest of all visible GPUs, what a
    tensor-parallel engine must live with), from the driver; None when it cannot be asked."""
    from sal_core.gpu_info import visible_gpus

    gpus = visible_gpus()
    if index is not None:
        gpus = [g for g in gpus if g.index == index]
    return min((g.capability for g in gpus), default=None)


def resolve_dtype(dtype: str, device: Any, key: str) -> Any:
    """`dtype_name` as a torch dtype, for a model going onto torch device `device`."""
    import torch

    capability = gpu_capability(device.index or 0) if device.type == "cuda" else None
    return getattr(torch, dtype_name(dtype, device.type, capability, key))
