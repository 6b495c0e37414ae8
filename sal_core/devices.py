"""Where a model runs and at which precision: one rule for policy models and PRMs alike."""

from __future__ import annotations

from typing import Any

from sal_core.constants import DTYPES
from sal_core.settings.build import require_one_of


def resolve_device(device: str, key: str) -> Any:
    """'auto' picks the first CUDA GPU when there is one, else the CPU; anything else must be a
    torch device string. `key` names the config setting in errors (`model.device`, `prm.device`)."""
    import torch

    from sal_core.errors import ConfigError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"{key}: {device!r} is not a torch device ({err})") from err


def resolve_dtype(dtype: str, device: Any, key: str) -> Any:
    """'auto' is bfloat16 on a GPU that supports it (float16 on older GPUs, as vLLM's 'auto' picks for
    bfloat16 checkpoints there) and float32 on CPU, where half-precision matmuls are slower and less
    reproducible."""
    import torch

    require_one_of(dtype, DTYPES, key)
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
