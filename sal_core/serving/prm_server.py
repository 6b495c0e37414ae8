"""`sal serve-prm`: one PRM (any `type` but `server`) loaded once, scoring for many jobs over HTTP.

    POST /v1/score   {"model": NAME (optional), "problems": [str], "completions": [[str]]}
                  -> {"model": NAME, "scores": [[[float per step] per completion] per problem],
                      "tokens": [[tokens read per completion] per problem]}
    POST /pooling    vLLM's pooling API for token-classifier PRMs (qwen2.5-math): {"model", "input":
                     token ids or a list of them} -> {"data": [{"index", "data": [[p_bad, p_good] per
                     step-tag token]}]}, what `vllm serve` answers for Qwen2.5-Math-PRM, so clients
                     written for vLLM work against this server and the other way round.
    GET /health, /v1/models, /v1/info (see app.py)

Concurrent requests are merged into one `PRM.score_with_tokens` call (batching.py), where the PRM batches
completions of similar length across all of them. Scores equal in-process scores: the same code runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from sal_core.errors import ConfigError
from sal_core.prm.base import PRM
from sal_core.serving.app import HTTPError, check_model_name, create_app, model_card, run_batched, serve_loaded
from sal_core.settings.jobs import PRMSettings

if TYPE_CHECKING:  # annotations only
    from sal_core.serving.app import ServerOptions


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    problems: list[str]
    completions: list[list[str]]


class PoolingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: list[int] | list[list[int]]
    task: Literal["token_classify"] | None = None


def score_batch(prm: PRM, payloads: list[tuple[str, Any]]) -> list[Any]:
    """Run merged requests: all score requests in one PRM.score call, all pooling inputs in one pass."""
    results: list[Any] = [None] * len(payloads)
    scoring = [(k, p) for k, (kind, p) in enumerate(payloads) if kind == "score"]
    if scoring:
        problems = [problem for _, (ps, _) in scoring for problem in ps]
        completions = [comps for _, (_, cs) in scoring for comps in cs]
        scores, tokens = prm.score_with_tokens(problems, completions)
        start = 0
        for k, (ps, _) in scoring:
            results[k] = (scores[start : start + len(ps)], tokens[start : start + len(ps)])
            start += len(ps)
    pooling = [(k, p) for k, (kind, p) in enumerate(payloads) if kind == "pool"]
    if pooling:
        probs = prm.score_encoded([e for _, encs in pooling for e in encs])  # type: ignore[attr-defined]
        start = 0
        for k, encs in pooling:
            results[k] = probs[start : start + len(encs)]
            start += len(encs)
    return results


def create_prm_app(prm: PRM, settings: PRMSettings, options: ServerOptions) -> Any:
    """The FastAPI app serving `prm` (already loaded), and its model card."""
    extra = {"type": settings.type, "max_length": settings.max_length, "step_layout": settings.step_layout}
    model = model_card(settings, options, "prm", api="sal", **extra)
    app, batcher = create_app(model, lambda payloads: score_batch(prm, payloads), "completions", options)

    @app.post("/v1/score")
    async def score(request: ScoreRequest) -> dict[str, Any]:
        check_model_name(request.model, model["name"])
        if len(request.problems) != len(request.completions):
            raise HTTPError(400, f"{len(request.problems)} problems but {len(request.completions)} completion lists")
        size = sum(len(c) for c in request.completions)
        payload = ("score", (request.problems, request.completions))
        scores, tokens = await run_batched(batcher, payload, size, options, "completions")
        return {"model": model["name"], "scores": scores, "tokens": tokens}

    @app.post("/pooling")
    async def pooling(request: PoolingRequest) -> dict[str, Any]:
        check_model_name(request.model, model["name"])
        tag_id = getattr(prm, "tag_id", None)
        if tag_id is None:
            raise HTTPError(404, f"the pooling API needs a token-classifier PRM (qwen2.5-math), not {settings.type}")
        inputs = request.input if request.input and isinstance(request.input[0], list) else [request.input]
        encoded = [_tagged(ids, tag_id, settings.max_length, prm) for ids in inputs]
        probs = await run_batched(batcher, ("pool", encoded), len(encoded), options, "inputs")
        data = [{"index": k, "object": "pooling", "data": [[1.0 - p, p] for p in row]} for k, row in enumerate(probs)]
        used = sum(len(ids) for ids in inputs)
        return {"object": "list", "model": model["name"], "data": data, "usage": {"prompt_tokens": used}}

    return app, model


def _tagged(ids: Any, tag_id: int, max_length: int, prm: PRM) -> Any:
    """One pooling input as an encoding scored at every step-tag token (vLLM's step pooling)."""
    from sal_core.prm.hf import Encoded

    if not ids:
        raise HTTPError(400, "malformed request: input: an empty token list")
    if len(ids) > max_length:
        raise HTTPError(400, f"input of {len(ids)} tokens is longer than this PRM's max_length {max_length}")
    vocab = len(prm.tokenizer)  # type: ignore[attr-defined]
    if min(ids) < 0 or max(ids) >= vocab:
        raise HTTPError(400, f"malformed request: input: token ids must be in [0, {vocab})")
    return Encoded(list(ids), [k for k, token in enumerate(ids) if token == tag_id])


def serve_prm(settings: PRMSettings, options: ServerOptions) -> None:
    """Bind the port, load the PRM, then serve until SIGTERM (writing the service file once ready)."""
    settings.validate("prm")
    if settings.served:
        raise ConfigError("prm.type: serve-prm loads a PRM's weights; `type: server` would call another server")
    from sal_core.prm import load_prm

    what = f"PRM {settings.name} ({settings.type})"
    serve_loaded(options, what, lambda: load_prm(settings), lambda prm: create_prm_app(prm, settings, options))
