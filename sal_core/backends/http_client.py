"""The client side every server-backed job shares: finding the server, its API key, and HTTP calls with
timeouts, bounded retries with exponential backoff, and one-line errors naming the server.

A job finds its server from its ServerLocation (the config's `servers:` entry): `url`, or the
`service_file` a server job writes once it answers (waiting up to `wait` seconds for it).
Connection failures, timeouts and 502/503/504 answers are retried `retries` times (0.5 s, 1 s, 2 s,
... apart); anything else that is not a good JSON answer fails the job at once with a ServerError
naming the URL, so a broken server never passes silently.

It lives in backends/, a low stage, because the clients of both kinds of server use it
(backends/openai_backend.py, prm/server.py); reading a service file is client work too, so it is
here and serving/ (the servers, a higher stage) imports it, never the other way round.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sal_core.backends.server_share import ServerShare
from sal_core.errors import ServerError
from sal_core.settings.endpoint import ServerLocation, key_from_env

log = logging.getLogger(__name__)

RETRY_STATUS = (502, 503, 504)
#: the variable holding the key of the servers `sal with-servers` started for this run: sent when a
#: location names no `api_key_env` of its own, so configs written before servers had keys keep working
RUN_KEY_ENV = "SAL_API_KEY"
MAX_BACKOFF_S = 10.0


def backoff(attempt: int) -> float:
    """Seconds to sleep before retry number `attempt` (0-based)."""
    return min(0.5 * 2**attempt, MAX_BACKOFF_S)


@dataclass(frozen=True)
class Endpoint:
    """Where a server is: `url` (http://host:port, no trailing slash) and, for messages, how it was found."""

    url: str
    where: str
    api_key: str | None = None

    def name(self, who: str) -> str:
        return f"{who} {self.where}"


def resolve_endpoint(location: ServerLocation, where: str, who: str) -> Endpoint:
    """The server's root URL, from `url` or from the service file (waiting up to `wait` for it), and
    the API key from the environment variable `api_key_env` names (`where`: the config key, for errors),
    or else the run's key in RUN_KEY_ENV, if set."""
    key = key_from_env(location.api_key_env, f"{where}.api_key_env") or os.environ.get(RUN_KEY_ENV) or None
    if location.url:
        url = location.url.rstrip("/").removesuffix("/v1")
        return Endpoint(url=url, where=url, api_key=key)
    assert location.service_file, f"{where}: a validated location names a url or a service file"
    record = read_service_file(location.service_file, location.wait, who)
    url = str(record["url"]).rstrip("/")
    return Endpoint(url=url, where=f"{url} (service file {location.service_file})", api_key=key)


def read_service_file(path: str | Path, wait: float, who: str) -> dict[str, Any]:
    """The service record in `path`, waiting up to `wait` seconds for it to appear."""
    path = Path(path)
    deadline = time.monotonic() + wait
    while True:
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait:g} s" if wait else ""
                message = f"{who}: service file {path} does not exist{waited} (is the server running?)"
                raise ServerError(message) from None
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0.01)))
            continue
        except (OSError, ValueError) as err:
            raise ServerError(f"{who}: service file {path} is unreadable ({err})") from err
        if not isinstance(record, dict) or not isinstance(record.get("url"), str):
            raise ServerError(f"{who}: service file {path} has no `url`")
        return record


class JsonClient:
    """JSON over HTTP to one server, with the retry and error rules of this module."""

    def __init__(self, endpoint: Endpoint, location: ServerLocation, who: str) -> None:
        import httpx

        self.endpoint, self.who, self.retries = endpoint, who, location.retries
        #: this job's share of the server's capacity: how many requests it sends at once
        self.share = ServerShare(location.service_file, location.max_in_flight)
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        timeout = httpx.Timeout(location.timeout, connect=min(location.timeout, 10.0))
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)  # the share limits requests
        self._http = httpx.Client(base_url=endpoint.url, headers=headers, timeout=timeout, limits=limits)

    @property
    def name(self) -> str:
        return self.endpoint.name(self.who)

    def close(self) -> None:
        self.share.close()
        self._http.close()

    def get(self, path: str, retries: int | None = None) -> Any:
        return self.request("GET", path, None, retries)

    def post(self, path: str, payload: Any) -> Any:
        return self.request("POST", path, payload)

    def request(self, method: str, path: str, payload: Any, retries: int | None = None) -> Any:
        """The decoded JSON answer (None for an empty body); ServerError after `retries` failed retries
        or on an error status or a body that is not JSON."""
        import httpx

        retries = self.retries if retries is None else retries
        failure = ""
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff(attempt - 1))
            try:
                response = self._http.request(method, path, json=payload)
            except httpx.TransportError as err:
                failure = f"{err.__class__.__name__}: {err}".rstrip(": ")
                log.warning("%s%s: %s (attempt %d of %d)", self.name, path, failure, attempt + 1, retries + 1)
                continue
            self.share.note(response.headers)
            if response.status_code in RETRY_STATUS:
                failure = f"HTTP {response.status_code}: {_message(response)}"
                log.warning("%s%s: %s (attempt %d of %d)", self.name, path, failure, attempt + 1, retries + 1)
                continue
            if response.status_code >= 400:
                status = response.status_code
                raise ServerError(f"{self.name}: {method} {path} answered HTTP {status}: {_message(response)}")
            if not response.content.strip():
                return None  # e.g. vLLM's /health
            try:
                return response.json()
            except ValueError:
                raise ServerError(
                    f"{self.name}: {method} {path} answered something that is not JSON: {_snippet(response.text)}"
                ) from None
        raise ServerError(f"{self.name}: {method} {path} failed after {retries + 1} attempts ({failure})")


def _snippet(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


def _message(response: Any) -> str:
    """The error message of an answer: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or raw text."""
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("detail"):
            return str(body["detail"])
        if body.get("message"):
            return str(body["message"])
    return _snippet(response.text)


def wait_until_ready(client: JsonClient, wait: float) -> Any:
    """GET /health until it answers (up to `wait` seconds, then the usual retries); its JSON, or None
    for servers whose /health has an empty body (vLLM)."""
    deadline = time.monotonic() + wait
    while wait > 0 and time.monotonic() < deadline:
        try:
            return client.get("/health", retries=0)
        except ServerError as err:
            log.info("waiting for %s: %s", client.name, err)
            time.sleep(min(2.0, max(deadline - time.monotonic(), 0.0)))
    return client.get("/health")
