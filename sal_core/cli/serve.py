"""Serve a policy model behind the OpenAI completions API, so that many `generate` jobs share it.

Loads the model once with the transformers backend (CPU or one GPU), then answers
POST /v1/completions (prompt as text or token ids; temperature, top_p, seed, max_tokens, stop,
include_stop_str_in_output; n=1), GET /v1/models, GET /health and GET /v1/info. Requests arriving
together are merged into one backend.generate call; a seeded request gives the same text as the
in-process backend. Jobs reach it with `backend: openai` and `url` or `service_file`.
Stops on SIGTERM/SIGINT and then removes its service file.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from sal_core.cli.options import flag
from sal_core.serving.app import ServerOptions, settings_from_arg
from sal_core.settings.jobs import ModelSettings


def add_server_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """Options both servers take: one flag per ServerOptions field, with its help and default."""
    for option in fields(ServerOptions):
        kind = {"int": int, "float": float}.get(str(option.type))
        help_text = option.metadata["help"].format(unit=unit)
        if option.default is not None:
            help_text += f" (default: {option.default})"
        parser.add_argument(flag(option.name), type=kind, default=option.default, help=help_text)


def server_options(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(**{option.name: getattr(args, option.name) for option in fields(ServerOptions)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model settings as JSON (a `models:` entry), or a JSON file")
    add_server_arguments(parser, unit="prompts")


def run(args: argparse.Namespace) -> None:
    from sal_core.serving.generation_server import serve_model

    serve_model(settings_from_arg(args.model, ModelSettings, "model"), server_options(args))
