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
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sal_core.constants import CAPACITY_HEADER
from sal_core.serving.batching import MicroBatcher, QueueFullError
from sal_core.serving.service import bind_socket, model_revision, run_server, service_record
from sal_core.settings.endpoint import key_from_env

log = logging.getLogger(__name__)


def _flag(default: Any, help: str) -> Any:
    """A ServerOptions field with its command-line help: the flags of `sal serve` / `sal serve-prm` and
    the defaults of code that starts a server directly are one definition ({unit}: prompts, completions)."""
    return field(default=default, metadata={"help": help})


@dataclass
class ServerOptions:
    """Command-line options shared by `sal serve` and `sal serve-prm` (each field is a flag)."""

    host: str = _flag("127.0.0.1", "interface to listen on (0.0.0.0: all)")
    port: int = _flag(8000, "port (0: any free port)")
    service_file: str | None = _flag(None, "JSON file to write (atomically) once the server answers")
    served_model: str | None = _flag(None, "model name clients must ask for (default: the settings' name)")
    revision: str | None = _flag(None, "model revision to report (default: the Hub snapshot, if any)")
    api_key_env: str | None = _flag(None, "environment variable holding the key clients must send")
    batch_window_ms: float = _flag(10.0, "how long to wait for more requests before a model call")
    max_batch: int = _flag(256, "{unit} per model call")
    max_queue: int = _flag(1024, "waiting requests; more are answered 503")
    max_request_items: int = _flag(1024, "{unit} in one request; more are answered 413")
    max_body_bytes: int = _flag(64 * 2**20, "bytes in one request body; more are answered 413")

    def limits(self) -> dict[str, Any]:
        keys = ("batch_window_ms", "max_batch", "max_queue", "max_request_items", "max_body_bytes")
        return {k: v for k, v in asdict(self).items() if k in keys}

    def api_key(self) -> str | None:
        return key_from_env(self.api_key_env, "--api-key-env")


class HTTPError(Exception):
    """An error answer: status code, OpenAI error type, one-line message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status}}


def model_card(settings: Any, options: ServerOptions, kind: str, **extra: Any) -> dict[str, Any]:
    """What /health reports about the served model: the served name, the weights, the revision and a
    fingerprint of the settings, plus what the server kind adds (`extra`)."""
    return {
        "name": options.served_model or settings.name,
        "kind": kind,
        "path": settings.path,
        "revision": options.revision or model_revision(settings.path),
        "fingerprint": settings_fingerprint(settings),
        **extra,
    }


def create_app(
    model: dict[str, Any], process: Callable[[list[Any]], list[Any]], unit: str, options: ServerOptions
) -> tuple[Any, MicroBatcher]:
    """A FastAPI app with the shared endpoints, and the batcher that merges requests for `process`;
    each server adds its own work endpoint."""
    from fastapi import FastAPI

    key = options.api_key()
    created = int(time.time())
    batcher = MicroBatcher(
        process,
        max_batch=options.max_batch,
        window_s=options.batch_window_ms / 1000,
        max_queue=options.max_queue,
        unit=unit,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"sal {model['kind']} server: {model['name']}", lifespan=lifespan)

    _install_guards(app, options, key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ready", "model": model}  # without the key: the status only (_install_guards)

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

    return app, batcher


def serve_loaded(options: ServerOptions, what: str, load: Callable[[], Any], create: Callable[[Any], Any]) -> None:
    """Bind the port, `load` the model, build its app with `create(loaded)` -> (app, model card), then
    serve until SIGTERM, writing the service file once the server answers. The port is bound before the
    model loads, so a taken port fails in a second; the service file names what /health reports."""
    if not options.api_key() and not is_loopback(options.host):  # an unset key variable fails now
        log.warning("listening on %s without an API key: anyone who can reach it can use it", options.host)
    sock = bind_socket(options.host, options.port)
    started = time.perf_counter()
    loaded = load()
    log.info("loaded %s in %.1f s", what, time.perf_counter() - started)
    app, model = create(loaded)
    served = {key: model[key] for key in ("kind", "api", "revision", "fingerprint")}
    record = service_record(options.host, sock.getsockname()[1], model=model["name"], **served)
    run_server(app, sock, options.service_file, record)


def _install_guards(app: Any, options: ServerOptions, key: str | None) -> None:
    """Size limit and API key on every request; OpenAI-shaped bodies for every error answer; the
    server's capacity (max_batch) in every answer past the key."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        if key and not _has_key(request, key):
            if request.url.path == "/health":  # open to probes, but what is served (the path) only with the key
                return JSONResponse({"status": "ready"})
            return JSONResponse(error_body(401, "missing or wrong API key", "authentication_error"), 401)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > options.max_body_bytes:
            message = f"request body of {length} bytes is over the limit of {options.max_body_bytes}"
            return JSONResponse(error_body(413, message, "invalid_request_error"), status_code=413)
        response = await call_next(request)
        response.headers[CAPACITY_HEADER] = str(options.max_batch)  # clients split it (backends/server_share.py)
        return response

    @app.exception_handler(HTTPError)
    async def http_error(_request: Request, err: HTTPError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.message, err.kind), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        """FastAPI's own refusals (a body that is not JSON, an unknown path or method) in the OpenAI shape."""
        kind = "not_found" if err.status_code == 404 else "invalid_request_error"
        message = f"malformed request: body: {err.detail}" if err.status_code == 400 else str(err.detail)
        return JSONResponse(error_body(err.status_code, message, kind), err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"malformed request: {where or 'body'}: {first.get('msg', 'invalid')}"
        return JSONResponse(error_body(400, message, "invalid_request_error"), status_code=400)


def _has_key(request: Any, key: str) -> bool:
    sent = request.headers.get("authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {key}".encode())


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
