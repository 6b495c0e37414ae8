"""GPU memory shared by vLLM and a guiding PRM loaded in the same job.

vLLM reserves `gpu_memory_utilization` of the GPU at start-up (weights plus KV cache) and keeps it.
Beam search and DVTS then load their PRM (8B in the published grid) on the same GPU. Before the
engine starts, `vllm_share_beside_prm` estimates what the PRM needs (backends.memory_estimate: its
weights, activations at `batch_size` x `max_length`, its shared-prefix cache, from its config.json
and safetensors headers) and gives vLLM the rest of the free memory (at most ALONE); a share too
small for the policy, or a configured share that leaves the PRM too little, fails in one line. The
GPU's free and total memory come from the driver (sal_core.gpu_info), so CUDA is not initialised
before `vllm.LLM`. Where the driver or the PRM's files cannot be read, the fixed default applies:
0.5 beside an in-process PRM (search-and-learn's value: src/sal/config.py), 0.9 alone. After the
engine has started, `check_prm_fits` checks the same need against the memory really free.
A Hub id (every published PRM path) is looked up in the local Hub cache, offline, where compute nodes
read it; when it is not there the checks are skipped with one log line saying so.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

from sal_core.backends.memory_estimate import DTYPE_BYTES as RUN_DTYPE_BYTES
from sal_core.backends.memory_estimate import Architecture, PRMNeed, prm_need
from sal_core.errors import ModelError
from sal_core.hub import HUB_NAME, hub_cache, staged_folder
from sal_core.settings.jobs import ModelSettings, PRMSettings

log = logging.getLogger(__name__)

#: vLLM's share of the GPU when nothing else is loaded in the process
ALONE = 0.9
#: vLLM's share beside an in-process PRM: search-and-learn's value, half the GPU for the PRM
BESIDE_PRM = 0.5
GIB = 1024**3
#: vLLM's own memory beside the policy's weights and KV cache (the activations of its profiling
#: step, CUDA graphs, NCCL): an allowance, measured by bench/gpu_check.py on the first GPU
VLLM_RUNTIME_BYTES = 2 * GIB
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


def read_config(path: str | Path, revision: str | None = None) -> dict | None:
    """A checkpoint's config.json (local folder or local Hub cache), or None when it cannot be read."""
    folder = checkpoint_folder(path, revision)
    try:
        return json.loads((folder / "config.json").read_text()) if folder else None
    except (OSError, ValueError):
        return None


def architecture(path: str | Path, revision: str | None = None) -> Architecture | None:
    """The decoder shape of a checkpoint's config.json; None, logged, when it is unreadable or not a
    decoder of the shapes memory_estimate knows (the memory plan is then skipped, never guessed)."""
    config = read_config(path, revision)
    if config is None:
        return None
    try:
        return Architecture.from_config(config)
    except (KeyError, TypeError, ValueError) as err:
        log.warning("%s: config.json lacks %s; memory estimate skipped", path, err)
        return None


def prm_need_for(prm: PRMSettings, dtype: str, caches_prefixes: bool) -> PRMNeed | None:
    """What `prm` needs on the GPU running in `dtype` (None when its config.json cannot be read)."""
    arch = architecture(prm.path, prm.revision)
    if arch is None:
        return None
    weights = weight_bytes(prm.path, RUN_DTYPE_BYTES[dtype], prm.revision)
    return prm_need(arch, dtype, prm.batch_size, prm.max_length, caches_prefixes, weights)


def policy_floor_bytes(arch: Architecture, dtype: str, max_model_len: int, weights: int | None = None) -> int:
    """The least vLLM can start a policy of shape `arch` with: its weights (`weights` when read from
    safetensors headers), one `max_model_len` sequence of KV cache, and VLLM_RUNTIME_BYTES."""
    each = RUN_DTYPE_BYTES[dtype]
    weights = weights if weights is not None else arch.parameters() * each
    return weights + max_model_len * arch.kv_bytes_per_token(each) + VLLM_RUNTIME_BYTES


def policy_floor(model: ModelSettings, dtype: str) -> int | None:
    """`policy_floor_bytes` of the model's checkpoint (None when its config.json cannot be read)."""
    arch = architecture(model.path)
    if arch is None:
        return None
    return policy_floor_bytes(arch, dtype, model.max_model_len, weight_bytes(model.path, RUN_DTYPE_BYTES[dtype]))


def plan_share(
    total: int, free: int, need: PRMNeed, floor: int | None, model: ModelSettings, prm: PRMSettings
) -> float:
    """vLLM's share of a GPU of `total` bytes with `free` free, beside a PRM needing `need`: the
    configured share if the PRM fits beside it, else the free memory the PRM leaves (at most ALONE,
    rounded down to 0.01). Raises ModelError, one line, when either side cannot fit. Pure."""
    if model.gpu_memory_utilization is not None:
        share = model.gpu_memory_utilization
        message = prm_fit_error(free - int(share * total), need.total, model, prm, share)
        if message:
            raise ModelError(f"{message} [{need.describe()}]")
        return share
    share = min(ALONE, int(100 * (free - need.total) / total) / 100)
    if share <= 0 or (floor is not None and share * total < floor):
        policy = f"; the policy needs at least {floor / GIB:.1f} GiB" if floor else ""
        raise ModelError(
            f"prms.{prm.name}: needs {need.total / GIB:.1f} GiB beside models.{model.name} ({need.describe()} "
            f"at batch_size {prm.batch_size} x max_length {prm.max_length}){policy}, and the GPU has "
            f"{free / GIB:.1f} of {total / GIB:.1f} GiB free: lower prms.{prm.name}.batch_size or max_length, "
            f"or give the PRM its own GPU (prms.{prm.name}.device)"
        )
    return share


def vllm_share_beside_prm(model: ModelSettings, prm: PRMSettings, caches_prefixes: bool) -> float | None:
    """vLLM's share for a job whose PRM shares GPU 0 with the engine, decided before the engine starts
    (plan_share); None where the driver or the PRM's config cannot be read (the fixed default then)."""
    from sal_core.devices import dtype_name
    from sal_core.gpu_info import free_bytes, visible_gpus

    gpus = visible_gpus()
    if not gpus or prm.device not in ("auto", "cuda", "cuda:0"):
        return None
    gpu = gpus[0]
    need = prm_need_for(prm, dtype_name(prm.dtype, "cuda", gpu.capability, f"prms.{prm.name}.dtype"), caches_prefixes)
    if need is None:
        return None
    floor = policy_floor(model, dtype_name(model.dtype, "cuda", gpu.capability, f"models.{model.name}.dtype"))
    free = free_bytes(gpu.index) or gpu.free_bytes  # asked again: free memory is the one fact that changes
    share = plan_share(gpu.total_bytes, free, need, floor, model, prm)
    log.info(
        "vLLM's share of %s: %.2f of %.1f GiB (%.1f free); prms.%s needs %.1f GiB beside it (%s)",
        gpu.name, share, gpu.total_bytes / GIB, free / GIB, prm.name, need.total / GIB, need.describe(),
    )  # fmt: skip
    return share


def check_prm_fits(model: ModelSettings, prm: PRMSettings, utilization: float, caches_prefixes: bool = False) -> None:
    """Raise ModelError when the PRM is going onto a CUDA GPU without room for what it needs (its
    weights, activations and prefix cache; its weights alone when its config.json cannot be read).
    Called once vLLM holds its share: asking torch for free memory initialises CUDA here."""
    import torch

    from sal_core.devices import resolve_device, resolve_dtype

    device = resolve_device(prm.device, "prm.device")
    if device.type != "cuda" or not torch.cuda.is_available():
        return
    dtype = str(resolve_dtype(prm.dtype, device, "prm.dtype")).removeprefix("torch.")
    need = prm_need_for(prm, dtype, caches_prefixes)
    free, _total = torch.cuda.mem_get_info(device)  # creates this process's CUDA context: no longer to come
    needed = need.total - need.context if need else weight_bytes(prm.path, RUN_DTYPE_BYTES[dtype], prm.revision)
    if needed is None:
        return
    message = prm_fit_error(free, needed, model, prm, utilization)
    if message:
        raise ModelError(message)
