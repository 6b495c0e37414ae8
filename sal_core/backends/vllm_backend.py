"""Generation with vLLM on GPUs: the engine for paper-scale runs.

All requests of a search step go to one `LLM.generate` call, one SamplingParams per request (each
with its own temperature, top_p, seed and stop strings), so vLLM batches them continuously and
shares the prompt prefix through its prefix cache. vLLM is imported only here, only when chosen.

Prompts reach vLLM as token ids (`TokensPrompt`), never as text: vLLM would tokenize text with the
tokenizer's special tokens and put a second BOS after a chat template's own. The ids come from
`tokens.prepare_prompts`, the same call the transformers engine makes. Building the engine's inputs
(`plan_call`, `engine_inputs`) and reading its outputs (`map_outputs`) are plain functions, tested
against vLLM's real classes without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sal_core.backends.base import NO_ROOM, FinishReason, GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.backends.gpu_memory import gpu_memory_utilization
from sal_core.backends.tokens import PreparedPrompt, prepare_prompts
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


def sampling_kwargs(request: GenerationRequest, max_tokens: int) -> dict[str, Any]:
    """The `vllm.SamplingParams` arguments of one request: one sample, its own temperature, top_p
    and seed, and stop strings kept in the output (search steps end with their separator)."""
    return {
        "n": 1,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": max_tokens,
        "stop": list(request.stop) or None,
        "seed": request.seed,
        "include_stop_str_in_output": True,
    }


@dataclass(frozen=True)
class VLLMCall:
    """One `LLM.generate` call planned: the requests that run (in call order) and the indices of
    those answered without running (no room left in the context window)."""

    size: int
    prepared: list[PreparedPrompt]
    no_room: list[int]


def plan_call(tokenizer: Any, requests: Sequence[GenerationRequest], max_model_len: int) -> VLLMCall:
    """Prompt ids and token budgets of every request, as the transformers engine computes them."""
    prepared, no_room = prepare_prompts(tokenizer, requests, max_model_len)
    return VLLMCall(len(requests), prepared, no_room)


def engine_inputs(vllm: Any, call: VLLMCall) -> tuple[list[Any], list[Any]]:
    """`LLM.generate`'s two arguments: one `TokensPrompt` and one `SamplingParams` per running request.
    `vllm` is the imported module (passed in, so this module imports without it)."""
    from vllm.inputs import TokensPrompt

    prompts = [TokensPrompt(prompt_token_ids=p.prompt_token_ids) for p in call.prepared]
    params = [vllm.SamplingParams(**sampling_kwargs(p.request, p.max_tokens)) for p in call.prepared]
    return prompts, params


def map_outputs(call: VLLMCall, results: Sequence[Any]) -> list[GenerationOutput]:
    """One output per request of `call`, in request order, from vLLM's `RequestOutput`s (in call order)."""
    if len(results) != len(call.prepared):
        raise ModelError(f"vLLM returned {len(results)} results for {len(call.prepared)} prompts")
    outputs: list[GenerationOutput] = [NO_ROOM] * call.size
    for prepared, result in zip(call.prepared, results, strict=True):
        out = result.outputs[0]
        outputs[prepared.index] = to_generation_output(out.text, out.token_ids, out.finish_reason, out.stop_reason)
    return outputs


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
                # generate_shard resolves the job's default; alone, vLLM may take the usual share
                gpu_memory_utilization=gpu_memory_utilization(settings, prm_in_process=False),
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
        call = plan_call(self.tokenizer, requests, self.max_model_len)
        results: list[Any] = []
        if call.prepared:
            prompts, params = engine_inputs(self._vllm, call)
            results = self.llm.generate(prompts, params, use_tqdm=True)
        return map_outputs(call, results)
