"""Generation with vLLM on GPUs: the engine for paper-scale runs.

All requests of a search step go to one `LLM.generate` call, one SamplingParams per request (each
with its own temperature, top_p, seed and stop strings), so vLLM batches them continuously and
shares the prompt prefix through its prefix cache. vLLM is imported only here, only when chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sal_core.backends.base import FinishReason, GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.errors import ModelError
from sal_core.settings.jobs import ModelSettings

INSTALL_HINT = "pip install 'sal-workflow[vllm]'"


def to_generation_output(
    text: str, token_ids: Sequence[int], finish_reason: str | None, stop_reason: int | str | None
) -> GenerationOutput:
    """Map one vLLM CompletionOutput's fields onto our output.

    vLLM says 'stop' both for a stop string and for the end-of-sequence token; `stop_reason` tells
    them apart: the matched string for a stop string, None (or a stop token id) at end of sequence.
    """
    reason: FinishReason
    if finish_reason == "length":
        reason = "length"
    elif finish_reason == "stop":
        reason = "stop" if isinstance(stop_reason, str) else "eos"
    else:
        raise ModelError(f"vLLM returned an unexpected finish_reason {finish_reason!r} (request aborted?)")
    return GenerationOutput(text=text, num_tokens=len(token_ids), finish_reason=reason)


class VLLMBackend(GenerationBackend):
    """Adapter over `vllm.LLM` (offline inference API)."""

    def __init__(self, settings: ModelSettings) -> None:
        try:
            import torch
            import vllm
        except ImportError as err:
            raise ModelError(f"model.backend vllm: vLLM is not installed ({err}); run `{INSTALL_HINT}`") from err
        if not Path(settings.path).exists() and "/" not in settings.path:
            raise ModelError(f"model.path {settings.path}: not found (run `sal prepare-model` or fix the path)")
        self.settings = settings
        self._vllm = vllm
        try:
            self.llm = vllm.LLM(
                model=settings.path,
                tensor_parallel_size=settings.tensor_parallel_size or max(torch.cuda.device_count(), 1),
                gpu_memory_utilization=settings.gpu_memory_utilization,
                max_model_len=settings.max_model_len,
                enable_prefix_caching=settings.enable_prefix_caching,
                dtype=settings.dtype,
                seed=0,
            )
        except (OSError, ValueError) as err:
            raise ModelError(f"model.path {settings.path}: vLLM cannot load it ({err})") from err
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = settings.max_model_len

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """One output per request, in request order; prompts with no room left come back empty."""
        outputs: list[GenerationOutput | None] = [None] * len(requests)
        prompts: list[str] = []
        params = []
        slots: list[int] = []
        for index, request in enumerate(requests):
            # vLLM tokenizes a text prompt with special tokens (e.g. BOS), so count them too
            prompt_len = len(self.tokenizer(request.prompt)["input_ids"])
            budget = min(request.max_tokens, self.max_model_len - prompt_len)
            if budget <= 0:
                outputs[index] = GenerationOutput(text="", num_tokens=0, finish_reason="length")
                continue
            prompts.append(request.prompt)
            slots.append(index)
            params.append(
                self._vllm.SamplingParams(
                    n=1,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    max_tokens=budget,
                    stop=list(request.stop) or None,
                    seed=request.seed,
                    include_stop_str_in_output=True,
                )
            )
        if prompts:
            results = self.llm.generate(prompts, params, use_tqdm=True)
            for index, result in zip(slots, results, strict=True):
                out = result.outputs[0]
                outputs[index] = to_generation_output(out.text, out.token_ids, out.finish_reason, out.stop_reason)
        return [out for out in outputs if out is not None]
