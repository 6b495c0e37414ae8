"""Generation engines behind one interface; `load_backend` picks one from the model settings.

Engines are imported only when chosen, so a CPU-only install never imports vLLM.
"""

from __future__ import annotations

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.errors import ConfigError
from sal_core.hub import staged
from sal_core.settings.endpoint import Servers, location_of
from sal_core.settings.jobs import ModelSettings

__all__ = ["GenerationBackend", "GenerationOutput", "GenerationRequest", "load_backend"]


def load_backend(
    settings: ModelSettings, servers: Servers | None = None, prm_in_process: bool = False
) -> GenerationBackend:
    """The engine named by `settings.backend`, with the model loaded and ready (`backend: openai`:
    connected to the server whose location `servers` holds under the model's name). `prm_in_process`:
    a guiding PRM will share the device (vLLM then takes a smaller share of it). A Hub model loads from
    its staged snapshot (sal_core.hub), never from the Hub."""
    if settings.backend in ("transformers", "vllm"):  # before anything loads: a build that cannot use the GPUs
        from sal_core.backends.gpu_platform import check_gpu_platform

        check_gpu_platform(
            settings.device, settings.backend == "vllm", f"models.{settings.name}.backend {settings.backend}"
        )
    settings = staged(settings, "models")
    if settings.backend == "transformers":
        from sal_core.backends.transformers_backend import TransformersBackend

        return TransformersBackend(settings)
    if settings.backend == "vllm":
        from sal_core.backends.vllm_backend import VLLMBackend

        return VLLMBackend(settings, prm_in_process)
    if settings.backend == "openai":
        from sal_core.backends.openai_backend import OpenAIBackend

        location = location_of(settings, servers or {}, "model")
        assert location is not None, "a model with backend openai is served"
        return OpenAIBackend(settings, location)
    raise ConfigError(f"model.backend: {settings.backend!r} is not one of transformers, vllm, openai")
