"""What both servers share: limits, the FastAPI app with /health, /v1/models and /v1/info, OpenAI-style
error bodies, an optional API key, and `run_batched`, which turns batcher outcomes into HTTP answers.

Errors come back as `{"error": {"message", "type", "code"}}` (the OpenAI shape, so the `openai`
client shows the message): 400/422 for malformed requests, 401 for a missing key, 404 for another
model's name, 413 for a request over the size limit, 503 when the queue is full, 500 when the
model call itself failed.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from sal_core.errors import ConfigError
from sal_core.serving.batching import MicroBatcher, QueueFullError

log = logging.getLogger(__name__)


@dataclass
class ServerOptions:
    """Command-line options shared by `sal serve` and `sal serve-prm`."""

    host: str = "127.0.0.1"
    port: int = 8000
    service_file: str | None = None
    served_model: str | None = None
    revision: str | None = None
    #: environment variable holding the key clients must send (Authorization: Bearer KEY)
    api_key_env: str | None = None
    batch_window_ms: float = 10.0
    #: items (prompts, completions) per model call
    max_batch: int = 256
    #: requests waiting; more are answered 503
    max_queue: int = 1024
    #: items in one request; more are answered 413
    max_request_items: int = 1024
    #: bytes in one request body; more are answered 413
    max_body_bytes: int = 64 * 2**20

    def limits(self) -> dict[str, Any]:
        keys = ("batch_window_ms", "max_batch", "max_queue", "max_request_items", "max_body_bytes")
        return {k: v for k, v in asdict(self).items() if k in keys}

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env: environment variable {self.api_key_env} is not set")
        return key


class HTTPError(Exception):
    """An error answer: status code, OpenAI error type, one-line message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status}}


def create_app(title: str, model: dict[str, Any], batcher: MicroBatcher, options: ServerOptions) -> Any:
    """A FastAPI app with the shared endpoints; each server adds its own work endpoint."""
    from fastapi import FastAPI

    key = options.api_key()
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=title, lifespan=lifespan)

    _install_guards(app, options, key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ready", "model": model}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": model["name"], "object": "model", "created": created, "owned_by": "sal", "root": model["path"]}
        extra = {k: model[k] for k in ("max_model_len", "revision") if model.get(k) is not None}
        return {"object": "list", "data": [{**card, **extra}]}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        return {
            "model": model,
            "limits": options.limits(),
            "pending": batcher.pending,
            "queued": batcher.queued,
            "stats": batcher.stats.as_dict(),
        }

    return app


def _install_guards(app: Any, options: ServerOptions, key: str | None) -> None:
    """Size limit and API key on every request; OpenAI-shaped bodies for every error answer."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > options.max_body_bytes:
            message = f"request body of {length} bytes is over the limit of {options.max_body_bytes}"
            return JSONResponse(error_body(413, message, "invalid_request_error"), status_code=413)
        if key and request.url.path != "/health":
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {key}".encode()):
                return JSONResponse(error_body(401, "missing or wrong API key", "authentication_error"), 401)
        return await call_next(request)

    @app.exception_handler(HTTPError)
    async def http_error(_request: Request, err: HTTPError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.message, err.kind), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"malformed request: {where or 'body'}: {first.get('msg', 'invalid')}"
        return JSONResponse(error_body(400, message, "invalid_request_error"), status_code=400)


def check_model_name(requested: str | None, served: str) -> None:
    """404 when a request names another model than the one served (None: any)."""
    if requested is not None and requested != served:
        raise HTTPError(404, f"model {requested!r} is not served here (this server serves {served!r})", "not_found")


async def run_batched(batcher: MicroBatcher, payload: Any, size: int, options: ServerOptions, unit: str) -> Any:
    """Queue one request on the batcher; size and queue limits become 413 / 503, model errors 500."""
    if size > options.max_request_items:
        raise HTTPError(413, f"{size} {unit} in one request; the limit is {options.max_request_items}")
    try:
        return await batcher.submit(payload, size)
    except QueueFullError as err:
        raise HTTPError(503, f"server busy: {err}; retry later", "server_busy") from err
    except Exception as err:
        raise HTTPError(500, f"model call failed: {err.__class__.__name__}: {err}", "server_error") from err


def settings_fingerprint(settings: Any) -> str:
    """A short hash of the settings that decide results (settings.build.identity): equal hashes, equal outputs."""
    import hashlib
    import json

    from sal_core.settings.build import identity

    return hashlib.sha256(json.dumps(identity(settings), sort_keys=True).encode()).hexdigest()[:16]


def settings_from_arg(text: str, cls: Any, where: str) -> Any:
    """`cls` settings (ModelSettings, PRMSettings) from JSON text or the path of a JSON file."""
    from sal_core.settings.build import json_object

    return cls.from_dict(json_object(text, where, "settings"), where)
