"""Building settings dataclasses from config mappings, with errors that name the config key."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any, TypeVar

from sal_core.errors import ConfigError

T = TypeVar("T")


def build_settings(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Construct dataclass `cls` from `data` and validate it, naming `where.key` for unknown keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(known))})")
    try:
        obj = cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err
    obj.validate(where)  # type: ignore[attr-defined]
    return obj


def option(default: Any = MISSING, help: str = "") -> Any:
    """A settings field with its command-line help, so a command's flags, the config keys and the
    defaults used by code that calls a step directly are one definition."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class Settings:
    """Base of the settings dataclasses: built from a config mapping, validated, errors naming `where`."""

    #: the config key errors name when the caller gives none
    KEY = "settings"

    def validate(self, where: str) -> None:
        """Raise ConfigError naming `where.<field>` for a value that is not allowed."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> Any:
        return build_settings(cls, data, where or cls.KEY)


def require_one_of(value: Any, allowed: Sequence[Any], key: str) -> None:
    """ConfigError `key: 'value' is not one of a, b, c` unless `value` is allowed."""
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")


def require_at_least(value: int, minimum: int, key: str) -> None:
    """ConfigError `key: must be at least M, got V` when `value` is below `minimum`."""
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")


def identity(obj: Any) -> Any:
    """A settings object as plain data, what the workflow compares to decide whether a job must rerun
    (served-model keys left out while unset, so configs without servers keep their JSON; a server's
    location is no setting at all: settings.endpoint)."""
    if hasattr(obj, "identity"):
        return obj.identity()
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: identity(getattr(obj, f.name)) for f in fields(obj)}
    return obj


def to_json(obj: Any) -> str:
    """Compact, key-sorted JSON of a settings object's identity (or a dict): stable, so Snakemake's
    params check is exact and reruns exactly the jobs whose results a change can alter."""
    return json.dumps(identity(obj), sort_keys=True, separators=(",", ":"))


def json_object(text: str, where: str, what: str) -> dict[str, Any]:
    """A JSON object given inline or as the path of a file holding one (how jobs get their settings);
    ConfigError `where: ...` for bad JSON or anything but an object."""
    source = text
    if not text.lstrip().startswith("{") and Path(text).is_file():
        source = Path(text).read_text()
    try:
        data = json.loads(source)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a JSON object of {what}, got {type(data).__name__}")
    return data
