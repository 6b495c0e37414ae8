"""Argparse helpers shared by the sub-commands whose settings are a dataclass (train-prm, label-steps):
one flag per field, plus `--config` (the same keys as a JSON object or file, as the workflow passes
them); flags given on the command line win over `--config`."""

from __future__ import annotations

import argparse
import codecs
from dataclasses import MISSING, fields
from typing import Any

from sal_core.errors import ConfigError
from sal_core.settings.build import json_object


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type, lists: tuple[str, ...] = ()) -> None:
    """`--config` and one flag per field of `cls`, with the field's help (`settings.build.option`);
    each defaults to None: unset, so `--config` or the field's default applies. `lists` are the
    fields that take several values (`--stop A B`, or the flag repeated)."""
    parser.add_argument("--config", help="the settings below as a JSON object, or a JSON file's path (flags win)")
    for item in fields(cls):
        default = item.default if item.default is not MISSING else None
        kwargs: dict[str, Any] = {"default": None, "help": f"{item.metadata['help']} (default: {default!r})"}
        kind = str(item.type)
        if item.name in lists:
            kwargs.update(nargs="+", action="extend")
        elif "bool" in kind:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif "float" in kind:
            kwargs["type"] = float
        elif "int" in kind:
            kwargs["type"] = int
        parser.add_argument(flag(item.name), **kwargs)


def settings_from_args(
    args: argparse.Namespace, cls: Any, where: str, escaped: tuple[str, ...] = (), required: tuple[str, ...] = ()
) -> Any:
    """`cls` built from `--config`'s keys overridden by the flags given, and validated. Flags in
    `escaped` are written with backslash escapes ('\\n\\n') and decoded; `required` fields must come
    from one or the other."""
    data = json_object(args.config, "--config", "settings") if args.config else {}
    for item in fields(cls):
        value = getattr(args, item.name, None)
        if value is None:
            continue
        if item.name in escaped:
            value = [_unescape(v) for v in value] if isinstance(value, list) else _unescape(value)
        data[item.name] = value
    for key in required:
        if not data.get(key):
            raise ConfigError(f"{flag(key)}: required (as a flag or a --config key)")
    return cls.from_dict(data, where)


def _unescape(text: str) -> str:
    return codecs.decode(text, "unicode_escape")
