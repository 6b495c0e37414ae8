"""Generation through an OpenAI-compatible completions server (`vllm serve`, `sal serve`, SGLang, ...).

Many shard jobs then share one loaded model instead of each loading it. Every request goes out with
the official `openai` client: one completion per request, with its own temperature, top_p, seed,
max_tokens and stop strings, as many requests at a time as the job's share of the server's capacity
(backends/server_share.py), retried by the client (`retries`,
exponential backoff). Prompts are sent as token ids built by `prompt_token_ids`, so the BOS rule of
the in-process backends holds here too, and the tokenizer (from `path`) also budgets prompt length:
a request never asks for more than `max_model_len` (the smaller of the setting and the server's).
Stop strings stay in the text (vLLM's `include_stop_str_in_output`); token counts come from `usage`,
and the generated ids from each choice's `token_ids` (asked for with vLLM's `return_token_ids`, which
`vllm serve` 0.32 and 0.33 and `sal serve` answer; a server that ignores it leaves them None, and exact
continuation then refuses the job in one line).
vLLM says finish_reason "stop" both at a stop string and at end of sequence; its `stop_reason` (the
matched string, or null) tells them apart, as in vllm_backend.py. A server without `stop_reason`
counts as "stop" when the text ends with one of the stop strings, else "eos".
At start, the server's /v1/models must list `served_model`, or the job fails naming both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm.auto import tqdm

from sal_core.backends.base import NO_ROOM, FinishReason, GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.backends.http_client import resolve_endpoint
from sal_core.backends.server_share import ServerShare
from sal_core.backends.tokens import prompt_token_ids
from sal_core.errors import ModelError, ServerError
from sal_core.settings.endpoint import SERVERS_KEY, ServerLocation
from sal_core.settings.jobs import ModelSettings

log = logging.getLogger(__name__)

WHO = "model server"


def finish_reason(
    reason: Any, stop_reason: Any, text: str, stops: Sequence[str], has_stop_reason: bool
) -> FinishReason:
    """Our finish reason from a completion choice's `finish_reason` and (vLLM) `stop_reason`."""
    if reason == "length":
        return "length"
    if reason != "stop":
        raise ValueError(f"unexpected finish_reason {reason!r} (request aborted?)")
    if has_stop_reason:
        return "stop" if isinstance(stop_reason, str) else "eos"
    return "stop" if any(text.endswith(s) for s in stops) else "eos"


#: every other sampling field a server could fill from its own defaults (vllm serve: the model's
#: generation_config.json, unless started with --generation-config vllm), sent at its neutral value,
#: as search-and-learn's SamplingParams leave them: the OpenAI API's own fields ...
NEUTRAL_OPENAI: dict[str, float] = {"presence_penalty": 0.0, "frequency_penalty": 0.0}
#: ... and vLLM's extra ones (top_k 0: off, as vLLM >= 0.32 spells it; older releases also took -1)
NEUTRAL_EXTRA: dict[str, float] = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


def completion_arguments(model: str | None, request: GenerationRequest, ids: list[int], budget: int) -> dict[str, Any]:
    """Keyword arguments of `client.completions.create` for one request (token-id prompt, one sample)."""
    kwargs: dict[str, Any] = {
        "model": model,
        "prompt": ids,
        "max_tokens": budget,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "n": 1,
        **NEUTRAL_OPENAI,
        "extra_body": {"include_stop_str_in_output": True, "return_token_ids": True, **NEUTRAL_EXTRA},
    }
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.seed is not None:
        kwargs["seed"] = request.seed
    return kwargs


class OpenAIBackend(GenerationBackend):
    """Sends each GenerationRequest as one /v1/completions request (see the module docstring)."""

    def __init__(self, settings: ModelSettings, location: ServerLocation) -> None:
        import openai
        from transformers import AutoTokenizer

        settings.validate("model")
        self.settings, self.location = settings, location
        self.endpoint = resolve_endpoint(location, f"{SERVERS_KEY}.{settings.name}", WHO)
        self.name = self.endpoint.name(WHO)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(settings.path)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"model.path {settings.path}: cannot load the tokenizer ({err})") from err
        self._openai = openai
        self.client = openai.OpenAI(
            base_url=f"{self.endpoint.url}/v1",
            api_key=self.endpoint.api_key or "EMPTY",
            timeout=location.timeout,
            max_retries=location.retries,
        )
        #: this job's share of the server's capacity: how many requests it sends at once
        self.share = ServerShare(location.service_file, location.max_in_flight)
        self.max_model_len = self._check_model()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """`fn(...)` with the client's errors turned into one line naming the server."""
        openai = self._openai
        try:
            return fn(*args, **kwargs)
        except openai.APITimeoutError as err:
            raise ServerError(f"{self.name}: {what} timed out after {self.location.retries + 1} attempts") from err
        except openai.APIConnectionError as err:
            cause = err.__cause__ or err
            raise ServerError(
                f"{self.name}: {what} failed after {self.location.retries + 1} attempts "
                f"({cause.__class__.__name__}: {cause})"
            ) from err
        except openai.APIStatusError as err:
            raise ServerError(f"{self.name}: {what} answered HTTP {err.status_code}: {_message(err)}") from err
        except (openai.APIError, ValueError, TypeError) as err:
            raise ServerError(f"{self.name}: {what} answered something unusable ({err})") from err

    def _check_model(self) -> int:
        """The server must serve `served_model`; returns the usable context length."""
        raw = self._call("GET /v1/models", self.client.models.with_raw_response.list)
        self.share.note(raw.headers)
        listed = self._call("GET /v1/models", raw.parse)
        cards = {card.id: card for card in getattr(listed, "data", None) or []}
        expected = self.settings.served_model
        if expected not in cards:
            served = ", ".join(repr(name) for name in cards) or "no model"
            raise ServerError(f"{self.name}: serves {served}, but model.served_model is {expected!r}")
        extra = cards[expected].model_extra or {}
        revision, expected_revision = extra.get("revision"), self.settings.revision
        if expected_revision and revision and revision != expected_revision:
            raise ServerError(f"{self.name}: serves revision {revision!r}, but model.revision is {expected_revision!r}")
        if expected_revision and not revision:
            log.warning("%s reports no model revision; cannot check revision %s", self.name, expected_revision)
        limit = extra.get("max_model_len")
        if isinstance(limit, int) and limit < self.settings.max_model_len:
            log.info("model.max_model_len %d capped to the server's %d", self.settings.max_model_len, limit)
            return limit
        return self.settings.max_model_len

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """One output per request, in request order; prompts with no room left come back empty."""
        outputs: list[GenerationOutput | None] = [None] * len(requests)
        work: list[tuple[int, list[int], int]] = []
        for index, request in enumerate(requests):
            ids = list(request.prompt_token_ids or prompt_token_ids(self.tokenizer, request.prompt))
            budget = min(request.max_tokens, self.max_model_len - len(ids))
            if budget <= 0:
                outputs[index] = NO_ROOM
            else:
                work.append((index, ids, budget))
        if work:
            with ThreadPoolExecutor(max_workers=min(self.share.in_flight(), len(work))) as pool:
                futures = [pool.submit(self._complete, requests[i], ids, budget) for i, ids, budget in work]
                try:
                    for (index, _, _), future in tqdm(
                        zip(work, futures, strict=True), total=len(work), desc="generate", disable=len(work) < 32
                    ):
                        outputs[index] = future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        return [out for out in outputs if out is not None]

    def _complete(self, request: GenerationRequest, ids: list[int], budget: int) -> GenerationOutput:
        kwargs = completion_arguments(self.settings.served_model, request, ids, budget)
        response = self._call("POST /v1/completions", self.client.completions.create, **kwargs)
        choices = getattr(response, "choices", None)
        if not choices or not isinstance(getattr(choices[0], "text", None), str):
            raise ServerError(f"{self.name}: POST /v1/completions answered no completion text")
        choice = choices[0]
        extra = choice.model_extra or {}
        try:
            reason = finish_reason(
                choice.finish_reason, extra.get("stop_reason"), choice.text, request.stop, "stop_reason" in extra
            )
        except ValueError as err:
            raise ServerError(f"{self.name}: POST /v1/completions answered {err}") from err
        usage = getattr(response, "usage", None)
        tokens = usage.completion_tokens if usage is not None else self.count_tokens(choice.text) + (reason == "eos")
        return GenerationOutput(choice.text, int(tokens), reason, returned_ids(extra))


def returned_ids(extra: dict[str, Any]) -> tuple[int, ...] | None:
    """A choice's generated ids (vLLM's `token_ids`, answered to `return_token_ids`), None if absent."""
    ids = extra.get("token_ids")
    return tuple(int(i) for i in ids) if isinstance(ids, list) else None


def _message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(err, "message", err))
