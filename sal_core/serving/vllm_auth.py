"""The run's key on every route of a `vllm serve` we start, not only on vLLM's guarded prefixes.

vLLM's own key (VLLM_API_KEY, AuthenticationMiddleware in
vllm/entrypoints/serve/middleware/authenticate.py, the same file in 0.32 and 0.33) guards only paths
under /v1, /v2, /inference and /cohere: /pooling, /invocations, /score, /rerank, /tokenize, /metrics
and the rest answer anyone. vLLM takes extra ASGI middleware by import path (`--middleware`,
vllm/entrypoints/serve/middleware/register.py, both versions), added after its own and so run first:
`RequireKey` answers 401 to every request without `Authorization: Bearer <key>` on every path but
OPEN_PATHS (/health, which vLLM answers with an empty body: nothing about the model), websockets and
OPTIONS included. The key is read from the environment (KEY_ENV, the variable `sal with-servers` hands
the server), never from a command line; without one the server cannot answer at all.

At start-up (ASGI lifespan) it prints ROUTES_LINE and every route of the app to the server's log, as
JSON: which routes the key now closes, read from the app itself (openapi leaves some out).

To keyed answers it adds the engine's max_num_seqs (CAPACITY_HEADER), read from the running app's
config, so the jobs sharing the server can split what it runs at once (backends/server_share.py).

Imported by vLLM's API server process: this module imports the standard library and sal_core.constants
(itself standard library only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sal_core.constants import CAPACITY_HEADER

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]

#: the variable `vllm serve` and this middleware read the key from (vLLM's own)
KEY_ENV = "VLLM_API_KEY"
#: what answers without the key: the readiness probe (`sal announce`, clients' wait), which says nothing
OPEN_PATHS = frozenset({"/health"})
#: the import path vLLM's `--middleware` takes
MIDDLEWARE = f"{__name__}.RequireKey"
#: the start of the log line that lists the app's routes
ROUTES_LINE = "sal: every route but /health requires the key; routes: "
REFUSAL = json.dumps(
    {"error": {"message": "missing or wrong API key", "type": "authentication_error", "code": 401}}
).encode()


def middleware_args() -> list[str]:
    """`vllm serve`'s flags that close every route but OPEN_PATHS with the key in KEY_ENV."""
    return ["--middleware", MIDDLEWARE]


def app_routes(app: Any) -> list[dict[str, Any]]:
    """Every route of a Starlette/FastAPI app, mounted apps' routes included: path, methods, kind."""
    found = []
    for route in getattr(app, "routes", []):
        path = getattr(route, "path", "")
        kind = type(route).__name__
        methods = sorted(getattr(route, "methods", None) or [])
        found.append({"path": path, "methods": methods, "kind": kind})
        inner = getattr(route, "app", None) if kind == "Mount" else None
        for sub in app_routes(inner) if inner is not None else []:
            found.append({**sub, "path": path.rstrip("/") + sub["path"]})
    return found


class RequireKey:
    """Pure ASGI middleware: the key on every request but GET of OPEN_PATHS."""

    def __init__(self, app: Any) -> None:
        key = os.environ.get(KEY_ENV, "")
        if not key:
            raise RuntimeError(f"{KEY_ENV} is not set: this server would answer anyone; export the key there")
        self.app = app
        self._expected = hashlib.sha256(f"Bearer {key}".encode()).digest()
        self._listed = False

    def keyed(self, scope: Scope) -> bool:
        """Whether the request's first Authorization header is `Bearer <key>` (compared in constant time)."""
        sent = next((value for name, value in scope.get("headers", []) if name.lower() == b"authorization"), b"")
        return hmac.compare_digest(hashlib.sha256(sent).digest(), self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self.list_routes(scope)
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        route = path[len(root) :] if root and path.startswith(root) else path  # as Starlette routes it
        probe = scope["type"] == "http" and route in OPEN_PATHS and scope.get("method") in ("GET", "HEAD")
        if self.keyed(scope):
            return await self.app(scope, receive, self.announcing(scope, send))
        if probe:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # closed before the handshake: the server answers 403
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            raise RuntimeError(f"refusing an ASGI {scope['type']!r} connection without the key")
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        headers.append((b"content-length", str(len(REFUSAL)).encode()))
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": REFUSAL})

    def announcing(self, scope: Scope, send: Send) -> Send:
        """`send` adding CAPACITY_HEADER (the engine's max_num_seqs, once the app knows its config) to
        the answer's headers: jobs sharing the server split it (backends/server_share.py)."""
        config = getattr(getattr(scope.get("app"), "state", None), "vllm_config", None)
        seqs = getattr(getattr(config, "scheduler_config", None), "max_num_seqs", None)
        if scope["type"] != "http" or not isinstance(seqs, int):
            return send

        async def with_capacity(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (CAPACITY_HEADER.encode(), str(seqs).encode())]
                message = {**message, "headers": headers}
            await send(message)

        return with_capacity

    def list_routes(self, scope: Scope) -> None:
        """Once, at start-up: the app's routes on one line of the server's log."""
        if self._listed or scope.get("app") is None:
            return
        self._listed = True
        print(ROUTES_LINE + json.dumps(app_routes(scope["app"])), file=sys.stderr, flush=True)
