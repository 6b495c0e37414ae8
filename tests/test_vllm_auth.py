"""The key on every route of a `vllm serve` we start (serving/vllm_auth.py), checked on a small ASGI app
with routes of each kind vLLM's app has (plain, parameterised, a mounted app as /metrics, a websocket),
and the one-line refusals of a `vllm serve` that would answer strangers. The same middleware on a real
`vllm serve`: tests/test_vllm_serve.py and tests/test_vllm_pooling.py."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from vllm_checks import open_without_key, requests_for, served_routes

from sal_core.errors import ServerError
from sal_core.serving.announce import check_vllm_keyed
from sal_core.serving.vllm_auth import KEY_ENV, MIDDLEWARE, RequireKey, middleware_args

KEY = "k-auth-5be1f0"


def small_app() -> Starlette:
    async def answer(_request):
        return JSONResponse({"served": "secret-model"})

    async def echo(websocket):
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    async def metrics(scope, receive, send):
        await PlainTextResponse("vllm:num_requests_running 0")(scope, receive, send)

    routes = [
        Route("/health", answer),
        Route("/pooling", answer, methods=["POST"]),
        Route("/v1/models/{name}", answer),
        Mount("/metrics", metrics),
        WebSocketRoute("/v1/realtime", echo),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(RequireKey)
    return app


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture, tmp_path):
    monkeypatch.setenv(KEY_ENV, KEY)
    with TestClient(small_app(), base_url="http://server") as client:  # runs the lifespan: routes logged
        log = tmp_path / "server.log"
        log.write_text(capfd.readouterr().err)
        yield client, served_routes(log)


def test_every_route_but_health_answers_401_without_the_key(client) -> None:
    http, routes = client
    assert {r["path"] for r in routes} == {"/health", "/pooling", "/v1/models/{name}", "/metrics", "/v1/realtime"}
    answers = {}
    for route in routes:
        for method, path in requests_for(route):
            if method == "WEBSOCKET":
                with pytest.raises(WebSocketDisconnect) as closed, http.websocket_connect(path):
                    pass
                answers[f"{method} {path}"] = 401 if closed.value.code == 1008 else closed.value.code
            else:
                answers[f"{method} {path}"] = http.request(method, path).status_code
    assert open_without_key(answers) == {}
    assert answers["GET /health"] == 200 and answers["OPTIONS /health"] == 401
    refused = http.get("/pooling", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert "secret-model" not in refused.text


def test_the_key_opens_every_route(client) -> None:
    http, _ = client
    keyed = {"Authorization": f"Bearer {KEY}"}
    assert http.post("/pooling", headers=keyed).json() == {"served": "secret-model"}
    assert http.get("/metrics/", headers=keyed).text.startswith("vllm:")
    assert http.get("/v1/models/x", headers=keyed).status_code == 200
    with http.websocket_connect("/v1/realtime", headers=keyed) as socket:
        assert socket.receive_text() == "hello"
    for near_miss in (f"Bearer {KEY} ", f"bearer{KEY}", KEY, f"Bearer {KEY[:-1]}"):
        assert http.post("/pooling", headers={"Authorization": near_miss}).status_code == 401


def test_a_server_without_its_key_answers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(RuntimeError, match=f"^{KEY_ENV} is not set: this server would answer anyone"):
        RequireKey(small_app())


def test_an_unkeyed_vllm_serve_is_refused_in_one_line() -> None:
    closed = ["vllm", "serve", "m", *middleware_args()]
    check_vllm_keyed(closed, {KEY_ENV: KEY})
    check_vllm_keyed(["vllm", "serve", "m", f"--middleware={MIDDLEWARE}"], {KEY_ENV: KEY})
    check_vllm_keyed(["sal", "serve", "--model", "{}"], {})  # not vLLM: its own --api-key-env
    for command, env, says in [
        (closed, {}, f"vllm serve would answer anyone: {KEY_ENV} is not set"),
        (["vllm", "serve", "m"], {KEY_ENV: KEY}, "routes outside /v1 open (/pooling, /tokenize, /metrics)"),
        ([*closed, "--api-key", KEY], {KEY_ENV: KEY}, "--api-key puts the key where `ps` shows it"),
    ]:
        with pytest.raises(ServerError, match="^vllm serve ") as refused:
            check_vllm_keyed(command, env)
        assert says in str(refused.value) and "\n" not in str(refused.value)
