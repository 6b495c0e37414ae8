"""Settings of a model or PRM served over HTTP (`backend: openai`, PRM `type: server`).

What a server serves (`served_model`, `revision`, the PRM's `api`) decides results and is part of a
job's identity; where it lives and how to reach it (ENDPOINT_KEYS) changes no result, so `identity`
leaves it out of the JSON the workflow compares: a server moving to another node reruns nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sal_core.errors import ConfigError

#: where a server lives and how to reach it: they change no result, so they are not part of a job's identity
ENDPOINT_KEYS = ("url", "service_file", "api_key_env", "timeout", "retries", "wait", "max_in_flight")
#: what a server serves: part of a job's identity, but left out of it at their defaults (no server)
SERVED_KEYS = ("served_model", "revision", "api")
_LOCAL_ONLY = ("url", "service_file", "served_model", "revision", "api_key_env")


@dataclass(kw_only=True)
class EndpointSettings:
    """How a job reaches a model server instead of loading weights.

    `url` (http://host:port) or `service_file` (JSON written by `sal serve` / `sal serve-prm` when ready)
    says where it lives; `served_model` (and `revision`, when the server reports one) is checked against
    the server at job start. The API key is read from the environment variable named by `api_key_env`,
    so it never lands in a config, a result or a log.
    """

    url: str | None = None
    service_file: str | None = None
    served_model: str | None = None
    revision: str | None = None
    api_key_env: str | None = None
    #: seconds per HTTP request; a request that failed to connect or timed out is retried `retries` times
    timeout: float = 600.0
    retries: int = 3
    #: seconds to wait at job start for the service file to appear and the server to become ready
    wait: float = 0.0
    #: HTTP requests in flight at once from one job
    max_in_flight: int = 32

    def validate_endpoint(self, where: str, remote: bool, what: str) -> None:
        """Remote settings need a location and a served model; in-process ones must not set any."""
        if not remote:
            for key in _LOCAL_ONLY:
                if getattr(self, key) is not None:
                    raise ConfigError(f"{where}.{key}: only for {what}")
            return
        if (self.url is None) == (self.service_file is None):
            raise ConfigError(f"{where}.url: give exactly one of `url` and `service_file` for {what}")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: {self.url!r} must start with http:// or https://")
        if not self.served_model:
            raise ConfigError(f"{where}.served_model: name the model the server must serve (checked at job start)")
        if self.timeout <= 0 or self.wait < 0:
            raise ConfigError(f"{where}.timeout / wait: timeout must be > 0 and wait >= 0")
        if self.retries < 0 or self.max_in_flight < 1:
            raise ConfigError(f"{where}.retries / max_in_flight: need retries >= 0 and max_in_flight >= 1")

    def identity(self) -> dict[str, Any]:
        """The settings that decide a job's results: all but ENDPOINT_KEYS, and SERVED_KEYS only when set,
        so a server moving elsewhere reruns nothing and configs without servers keep their fingerprints."""
        data = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        for key in ENDPOINT_KEYS:
            data.pop(key, None)
        for key in SERVED_KEYS:
            if key in data and data[key] == defaults[key]:
                data.pop(key)
        return data
