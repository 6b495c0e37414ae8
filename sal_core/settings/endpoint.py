"""Models and PRMs served over HTTP (`backend: openai`, PRM `type: server`): what a server serves, and
where it lives.

What a server serves (`served_model`, `revision`, the PRM's `api`) decides results: it sits on the
model or PRM entry (ServedSettings), so it is part of a job's settings and a change reruns the jobs
that use it. Where a server lives and how to reach it (ServerLocation: url or service file, API key
variable, timeout, retries, wait, requests in flight) changes no result: it sits in the config's
`servers:` block, keyed by model or PRM name, reaches jobs through a file (`sal generate` / `sal score
--servers FILE`, written by the workflow when it is parsed) and never through the settings Snakemake
compares, so a server moving to another node or port reruns nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from sal_core.errors import ConfigError
from sal_core.hub import HUB_NAME
from sal_core.settings.build import Settings, require_at_least

#: what a server serves: part of a job's identity, but left out of it at their defaults (no server),
#: so configs without servers keep their settings JSON
SERVED_KEYS = ("served_model", "revision", "api")
SERVERS_KEY = "servers"


def key_from_env(variable: str | None, where: str) -> str | None:
    """The API key held by environment variable `variable` (None: no key); ConfigError naming `where`
    when it is unset. Keys live only in the environment, never in a config, a result or a log."""
    if not variable:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ConfigError(f"{where}: environment variable {variable} is not set")
    return key


@dataclass(kw_only=True)
class ServedSettings:
    """The served model a job expects (checked against the server at job start), mixed into ModelSettings
    and PRMSettings; its location is a ServerLocation kept apart (see the module docstring)."""

    #: further keys of the subclass left out of a job's identity while at their defaults: settings
    #: added after results existed, so upgrading reruns nothing (as SERVED_KEYS)
    OPTIONAL_KEYS: ClassVar[tuple[str, ...]] = ()

    served_model: str | None = None
    revision: str | None = None

    @property
    def served(self) -> bool:
        """Whether a server runs this model (set by the class: `backend: openai`, `type: server`)."""
        raise NotImplementedError

    def validate_served(self, where: str, what: str) -> None:
        """A served model names what it expects; an in-process one must not. `revision` pins a Hub
        model's files (staged and loaded at it; a server must report it), so it needs a Hub name."""
        path = getattr(self, "path", "")
        if self.revision is not None and not (self.served or HUB_NAME.fullmatch(path)):
            raise ConfigError(f"{where}.revision: for Hub models only (path {path!r} is not a Hub name org/model)")
        if not self.served:
            if self.served_model is not None:
                raise ConfigError(f"{where}.served_model: only for {what}")
        elif not self.served_model:
            raise ConfigError(f"{where}.served_model: name the model the server must serve (checked at job start)")

    def identity(self) -> dict[str, Any]:
        """The settings that decide a job's results: all, but SERVED_KEYS and OPTIONAL_KEYS only when set."""
        data = asdict(self)
        defaults = {f.name: f.default for f in fields(self)}
        for key in (*SERVED_KEYS, *self.OPTIONAL_KEYS):
            if key in data and data[key] == defaults[key]:
                data.pop(key)
        return data


@dataclass
class ServerLocation(Settings):
    """How a job reaches the server of one model or PRM: `url` (http://host:port) or `service_file`
    (JSON that `sal serve` / `sal serve-prm` write once they answer), and how patiently."""

    KEY = SERVERS_KEY

    url: str | None = None
    service_file: str | None = None
    #: name of the environment variable holding the API key
    api_key_env: str | None = None
    #: seconds per HTTP request; a request that failed to connect or timed out is retried `retries` times
    timeout: float = 600.0
    retries: int = 3
    #: seconds to wait at job start for the service file to appear and the server to become ready
    wait: float = 0.0
    #: HTTP requests in flight at once from one job, at most; unset: the job's share of the server's
    #: announced capacity (backends/server_share.py), 32 when the server announces none
    max_in_flight: int | None = None

    def validate(self, where: str) -> None:
        if (self.url is None) == (self.service_file is None):
            raise ConfigError(f"{where}.url: give exactly one of `url` and `service_file`")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: {self.url!r} must start with http:// or https://")
        if self.timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be > 0, got {self.timeout}")
        if self.wait < 0:
            raise ConfigError(f"{where}.wait: must be >= 0, got {self.wait}")
        require_at_least(self.retries, 0, f"{where}.retries")
        if self.max_in_flight is not None:
            require_at_least(self.max_in_flight, 1, f"{where}.max_in_flight")


Servers = dict[str, ServerLocation]
#: the keys of a `servers:` entry
LOCATION_KEYS = tuple(f.name for f in fields(ServerLocation))


def build_servers(data: Any, where: str = SERVERS_KEY) -> Servers:
    """ServerLocations by model or PRM name from a `servers:` mapping (the config's, or a servers file's)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must map model or PRM names to server locations")
    return {str(name): ServerLocation.from_dict(dict(entry or {}), f"{where}.{name}") for name, entry in data.items()}


def read_servers(text: str | None) -> Servers:
    """The servers given to `--servers`: JSON text, or the path of a JSON file (what the workflow writes)."""
    if not text:
        return {}
    source = text
    if not text.lstrip().startswith("{"):
        try:
            source = Path(text).read_text()
        except OSError as err:
            raise ConfigError(f"--servers: cannot read {text} ({err.strerror or err})") from err
    try:
        data = json.loads(source)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--servers: not valid JSON ({err})") from err
    return build_servers(data, "--servers")


def servers_json(servers: Servers) -> str:
    """What `read_servers` reads back: every location with all its keys, sorted, one file per config."""
    return json.dumps({name: asdict(servers[name]) for name in sorted(servers)}, indent=2, sort_keys=True) + "\n"


def write_servers_file(servers: Servers, path: str | Path) -> Path:
    """Write the servers file jobs read (`--servers`) unless it already says the same, so the workflow
    can call this every time it is parsed (on Slurm, in every job too) without touching the file."""
    from sal_core.tables import write_text_if_changed

    return write_text_if_changed(servers_json(servers), path)


def location_of(settings: ServedSettings, servers: Servers, what: str) -> ServerLocation | None:
    """The server location of a served model or PRM (None when it runs in-process); ConfigError naming
    the missing `servers.<name>` entry."""
    if not settings.served:
        return None
    name = settings.name  # type: ignore[attr-defined]
    if name not in servers:
        raise ConfigError(
            f"{SERVERS_KEY}.{name}: missing: {what} {name!r} is served, so its server's location (url or "
            f"service_file) must be given: the config's `{SERVERS_KEY}:` block, or `--servers` for sal generate / score"
        )
    return servers[name]
