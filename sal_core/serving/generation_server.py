"""`sal serve`: the transformers generation backend behind the OpenAI completions API.

    POST /v1/completions  {"model", "prompt": text | [text] | token ids | [token ids], "max_tokens",
                           "temperature", "top_p", "seed", "stop", "include_stop_str_in_output",
                           "return_token_ids", "n": 1,
                           top_k / min_p / repetition_penalty / presence_penalty / frequency_penalty at their
                           neutral values only: 400 naming the field otherwise}
    GET /health, /v1/models, /v1/info (see app.py)

The answer follows vLLM's: `finish_reason` is "length" or "stop", and `stop_reason` is the stop
string that ended the text, or null at the end-of-sequence token; with `return_token_ids` each choice
carries `prompt_token_ids` and the generated `token_ids` (the end-of-sequence token included, and at a
stop string the ids up to the token that completed it), as vLLM's do: exact continuation needs them.
Text prompts are tokenized as every backend tokenizes them (sal_core.backends.tokens: exactly one
BOS when the tokenizer adds one); token prompts are used as sent. Requests arriving together become
one `backend.generate` call, and since every row samples with its own seeded generator, a seeded
request gives the same text here as in-process. This lets the whole `backend: openai` path run on a
CPU, in tests and in the demo.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.backends.openai_backend import NEUTRAL_EXTRA, NEUTRAL_OPENAI
from sal_core.backends.tokens import prompt_token_ids
from sal_core.errors import ConfigError
from sal_core.serving.app import HTTPError, check_model_name, create_app, model_card, run_batched, serve_loaded
from sal_core.settings.jobs import ModelSettings

if TYPE_CHECKING:  # annotations only
    from sal_core.serving.app import ServerOptions


class CompletionRequest(BaseModel):
    # the openai client may send fields we do not use (user, ...); those that change results are refused below
    model_config = ConfigDict(extra="ignore")

    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1)
    #: a 64-bit signed integer, as vLLM's server takes (torch refuses others inside the model call)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    include_stop_str_in_output: bool = False
    return_token_ids: bool | None = None
    # sampling fields sal serve does not implement: accepted at their neutral values only (the openai
    # backend sends them all, so a vLLM server cannot fill them from a model's defaults)
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


def refuse_unsupported(request: CompletionRequest) -> None:
    for name, neutral in {**NEUTRAL_OPENAI, **NEUTRAL_EXTRA}.items():
        value = getattr(request, name)
        if value is not None and value != neutral and not (name == "top_k" and value == -1):
            raise HTTPError(400, f"{name}: sal serve samples without it; send {neutral} (its neutral value) or omit it")
    for name, bad in (
        ("n", request.n != 1),
        ("best_of", request.best_of not in (None, 1)),
        ("stream", request.stream),
        ("echo", request.echo),
        ("logprobs", request.logprobs is not None),
    ):
        if bad:
            raise HTTPError(400, f"{name}: not supported by sal serve (send one request per sample)")


def prompt_ids(request: CompletionRequest, tokenizer: Any) -> list[list[int]]:
    """Token ids of each prompt of the request (a request may carry several prompts)."""
    prompt = request.prompt
    if isinstance(prompt, str):
        prompts: list[Any] = [prompt]
    elif prompt and isinstance(prompt[0], int):
        prompts = [prompt]
    else:
        prompts = list(prompt)
    if not prompts:
        raise HTTPError(400, "malformed request: prompt: empty")
    vocab = len(tokenizer)
    ids = [prompt_token_ids(tokenizer, p) if isinstance(p, str) else list(p) for p in prompts]
    for row in ids:
        if not row:
            raise HTTPError(400, "malformed request: prompt: an empty token list")
        if min(row) < 0 or max(row) >= vocab:
            raise HTTPError(400, f"malformed request: prompt: token ids must be in [0, {vocab})")
    return ids


def to_choice(
    index: int, out: GenerationOutput, stops: list[str], keep_stop: bool, prompt: list[int] | None = None
) -> dict[str, Any]:
    """One OpenAI choice, with vLLM's `stop_reason` (the matched stop string, None at end of sequence)
    and, given the prompt's ids (`return_token_ids`), vLLM's `prompt_token_ids` and `token_ids`."""
    text, stop_reason = out.text, None
    if out.finish_reason == "stop":
        stop_reason = max((s for s in stops if text.endswith(s)), key=len, default=None)
        if stop_reason and not keep_stop:
            text = text[: -len(stop_reason)]
    finish = "length" if out.finish_reason == "length" else "stop"
    choice = {"index": index, "text": text, "finish_reason": finish, "stop_reason": stop_reason, "logprobs": None}
    if prompt is not None:
        choice.update(prompt_token_ids=prompt, token_ids=list(out.token_ids or ()))
    return choice


def create_generation_app(backend: GenerationBackend, settings: ModelSettings, options: ServerOptions) -> Any:
    """The FastAPI app serving `backend` (model already loaded), and its model card."""
    model = model_card(
        settings, options, "generation", api="openai", backend=settings.backend, max_model_len=backend.max_model_len
    )
    app, batcher = create_app(model, lambda payloads: _generate_batch(backend, payloads), "prompts", options)

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> dict[str, Any]:
        check_model_name(request.model, model["name"])
        refuse_unsupported(request)
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        ids = prompt_ids(request, backend.tokenizer)
        requests = [
            GenerationRequest(
                prompt="",
                temperature=request.temperature,
                top_p=request.top_p,
                max_tokens=request.max_tokens,
                stop=tuple(stops),
                seed=request.seed,
                prompt_token_ids=tuple(row),
            )
            for row in ids
        ]
        outputs = await run_batched(batcher, requests, len(requests), options, "prompts")
        keep, with_ids = request.include_stop_str_in_output, bool(request.return_token_ids)
        choices = [to_choice(k, out, stops, keep, ids[k] if with_ids else None) for k, out in enumerate(outputs)]
        prompt_tokens = sum(len(row) for row in ids)
        completion_tokens = sum(out.num_tokens for out in outputs)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model["name"],
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    return app, model


def _generate_batch(
    backend: GenerationBackend, payloads: list[list[GenerationRequest]]
) -> list[list[GenerationOutput]]:
    """All requests of all merged HTTP requests in one generate call, split back per HTTP request."""
    flat = [request for requests in payloads for request in requests]
    outputs = backend.generate(flat)
    results, start = [], 0
    for requests in payloads:
        results.append(outputs[start : start + len(requests)])
        start += len(requests)
    return results


def serve_model(settings: ModelSettings, options: ServerOptions) -> None:
    """Bind the port, load the model, then serve until SIGTERM (writing the service file once ready)."""
    if settings.backend != "transformers":
        raise ConfigError(
            f"model.backend: sal serve runs the transformers backend, not {settings.backend} "
            "(on a GPU node, `vllm serve` is the OpenAI-compatible server to use)"
        )
    from sal_core.backends import load_backend

    what = f"{settings.name} ({settings.backend})"
    serve_loaded(options, what, lambda: load_backend(settings), lambda b: create_generation_app(b, settings, options))
