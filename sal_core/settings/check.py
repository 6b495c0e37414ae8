"""Checking a workflow config: its JSON schema first, then the grid's cross-key rules, one clear line.

Snakemake's own `validate` prints the whole schema on an error; users need the key and what is
allowed, so the Snakefile calls `check_config` and stops with that single line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from sal_core.errors import ConfigError
from sal_core.settings.endpoint import LOCATION_KEYS, SERVERS_KEY
from sal_core.settings.grid import Grid, build_grid


def _key_path(path: Any) -> str:
    return ".".join(str(part) for part in path) or "config"


def _allowed_keys(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """Keys a schema object allows: its own properties and those of a `$defs` entry it refers to."""
    keys = set(schema.get("properties", {}))
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        keys |= set(defs.get(ref.rsplit("/", 1)[1], {}).get("properties", {}))
    return keys


def _location_hint(path: Any, key: str) -> str:
    """Where a server location key belongs, when it was put on a model or PRM entry."""
    parts = list(path)
    if len(parts) == 2 and parts[0] in ("models", "prms") and key in LOCATION_KEYS:
        return f"; a server's location goes under {SERVERS_KEY}.{parts[1]}.{key}"
    return ""


def _describe(error: jsonschema.ValidationError, defs: dict[str, Any]) -> str:
    where = _key_path(error.absolute_path)
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed = sorted(_allowed_keys(error.schema, defs))
        unexpected = sorted(set(error.instance) - set(allowed))
        key = f"{where}.{unexpected[0]}" if where != "config" else unexpected[0]
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{key}: unknown key{hint}{_location_hint(error.absolute_path, unexpected[0])}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "oneOf":
        return f"{where}: {error.instance!r} is not valid ({error.schema.get('description', 'see config/README.md')})"
    return f"{where}: {error.message}"


def validate_schema(config: dict[str, Any], schema_path: str | Path) -> None:
    """Raise ConfigError naming the first offending key (most specific error first)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (-len(e.absolute_path), e.message))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best, schema.get("$defs", {})))


def check_config(config: dict[str, Any], schema_path: str | Path) -> Grid:
    """Validate a config (schema, then cross-key rules) and expand it into the run grid."""
    validate_schema(config, schema_path)
    return build_grid(config)
