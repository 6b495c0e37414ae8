"""GPU memory shared by vLLM and a guiding PRM loaded in the same process.

vLLM reserves `gpu_memory_utilization` of the GPU at start-up (weights plus KV cache) and keeps it.
Beam search and DVTS then load their PRM (8B in the published grid) on the same GPU, so the default
depends on the job: 0.9 when nothing else is loaded, 0.5 beside an in-process PRM (search-and-learn
uses 0.5 for this reason: src/sal/config.py). A value in the config always wins. Before the PRM is
loaded, the free memory is checked against its weights (read from the safetensors headers, no
load), so a too-greedy setting fails in one line naming the key instead of an out-of-memory trace.
A Hub id (every published PRM path) is looked up in the local Hub cache, offline, where compute nodes
read it; when it is not there the check is skipped with one log line saying so.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

from sal_core.errors import ModelError
from sal_core.hub import HUB_NAME, hub_cache, staged_folder
from sal_core.settings.jobs import ModelSettings, PRMSettings

log = logging.getLogger(__name__)

#: vLLM's share of the GPU when nothing else is loaded in the process
ALONE = 0.9
#: vLLM's share beside an in-process PRM: search-and-learn's value, half the GPU for the PRM
BESIDE_PRM = 0.5
GIB = 1024**3
#: bytes per element of each safetensors dtype
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2}


def gpu_memory_utilization(model: ModelSettings, prm_in_process: bool) -> float:
    """vLLM's share of the GPU for this job: the configured value, else ALONE or BESIDE_PRM."""
    if model.gpu_memory_utilization is not None:
        return model.gpu_memory_utilization
    return BESIDE_PRM if prm_in_process else ALONE


def _safetensors_elements(path: Path) -> dict[str, int]:
    """Parameter count per stored dtype of one .safetensors file, from its JSON header only."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        elements = 1
        for dim in info["shape"]:
            elements *= dim
        counts[info["dtype"]] = counts.get(info["dtype"], 0) + elements
    return counts


def checkpoint_folder(path: str | Path, revision: str | None = None) -> Path | None:
    """The local folder holding `path`'s files: the folder itself, else the snapshot of that Hub id in
    the local Hub cache (HF_HUB_CACHE; offline, nothing is downloaded); None, logged, when neither."""
    if Path(path).is_dir():
        return Path(path)
    folder = staged_folder(str(path), revision) if HUB_NAME.fullmatch(str(path)) else None  # as staged (sal_core.hub)
    if folder is None:
        log.warning(
            "%s: not a local folder nor staged in the Hub cache %s; PRM memory check skipped", path, hub_cache()
        )
    return folder


def weight_bytes(folder: str | Path, load_dtype_bytes: int | None, revision: str | None = None) -> int | None:
    """Bytes the model's weights take once loaded: floating-point tensors at `load_dtype_bytes` each
    (None: as stored), others as stored. `folder` may be a Hub id found in the local Hub cache. None
    when there are no .safetensors files (not cached, or .bin weights), so the caller skips the check
    rather than guess."""
    local = checkpoint_folder(folder, revision)
    files = sorted(local.glob("*.safetensors")) if local is not None else []
    if not files:
        return None
    total = 0
    for file in files:
        for dtype, elements in _safetensors_elements(file).items():
            floating = dtype in ("F64", "F32", "F16", "BF16")
            each = load_dtype_bytes if floating and load_dtype_bytes else DTYPE_BYTES.get(dtype, 1)
            total += elements * each
    return total


def prm_fit_error(
    free_bytes: int, needed_bytes: int, model: ModelSettings, prm: PRMSettings, utilization: float
) -> str | None:
    """The one-line error when the PRM's weights do not fit in the free GPU memory, else None."""
    if needed_bytes <= free_bytes:
        return None
    numbers = f"{free_bytes / GIB:.1f} GiB free, {needed_bytes / GIB:.1f} GiB needed"
    if model.backend == "vllm":
        return (
            f"prms.{prm.name}: does not fit beside vLLM ({numbers}; vLLM holds "
            f"models.{model.name}.gpu_memory_utilization={utilization:g} of the GPU): "
            f"lower models.{model.name}.gpu_memory_utilization or give the PRM another GPU (prms.{prm.name}.device)"
        )
    return (
        f"prms.{prm.name}: does not fit beside models.{model.name} on the GPU ({numbers}): "
        f"give the PRM another GPU (prms.{prm.name}.device) or a smaller dtype (prms.{prm.name}.dtype)"
    )


def check_prm_fits(model: ModelSettings, prm: PRMSettings, utilization: float) -> None:
    """Raise ModelError when the PRM is going onto a CUDA GPU without room for its weights."""
    import torch

    from sal_core.devices import resolve_device, resolve_dtype

    device = resolve_device(prm.device, "prm.device")
    if device.type != "cuda" or not torch.cuda.is_available():
        return
    dtype = resolve_dtype(prm.dtype, device, "prm.dtype")
    needed = weight_bytes(prm.path, torch.empty((), dtype=dtype).element_size(), prm.revision)
    if needed is None:
        return
    free, _total = torch.cuda.mem_get_info(device)
    message = prm_fit_error(free, needed, model, prm, utilization)
    if message:
        raise ModelError(message)
