"""Generation engines behind one interface; `load_backend` picks one from the model settings.

Engines are imported only when chosen, so a CPU-only install never imports vLLM.
"""

from __future__ import annotations

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.errors import ConfigError
from sal_core.settings.jobs import ModelSettings

__all__ = ["GenerationBackend", "GenerationOutput", "GenerationRequest", "load_backend"]


def load_backend(settings: ModelSettings) -> GenerationBackend:
    """The engine named by `settings.backend`, with the model loaded and ready."""
    if settings.backend == "transformers":
        from sal_core.backends.transformers_backend import TransformersBackend

        return TransformersBackend(settings)
    if settings.backend == "vllm":
        from sal_core.backends.vllm_backend import VLLMBackend

        return VLLMBackend(settings)
    if settings.backend == "openai":
        from sal_core.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(settings)
    raise ConfigError(f"model.backend: {settings.backend!r} is not one of transformers, vllm, openai")
