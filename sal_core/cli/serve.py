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

from sal_core.serving.app import ServerOptions, settings_from_arg
from sal_core.settings.jobs import ModelSettings


def add_server_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """Options both servers take (see ServerOptions)."""
    defaults = ServerOptions()
    parser.add_argument("--host", default=defaults.host, help="interface to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=defaults.port, help="port (0: any free port)")
    parser.add_argument("--service-file", help="JSON file to write (atomically) once the server answers")
    parser.add_argument("--served-model", help="model name clients must ask for (default: the settings' name)")
    parser.add_argument("--revision", help="model revision to report (default: the Hub snapshot, if any)")
    parser.add_argument("--api-key-env", help="environment variable holding the key clients must send")
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=defaults.batch_window_ms,
        help="how long to wait for more requests before a model call",
    )
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch, help=f"{unit} per model call")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue, help="waiting requests before 503")
    parser.add_argument(
        "--max-request-items", type=int, default=defaults.max_request_items, help=f"{unit} per request before 413"
    )


def server_options(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(
        host=args.host,
        port=args.port,
        service_file=args.service_file,
        served_model=args.served_model,
        revision=args.revision,
        api_key_env=args.api_key_env,
        batch_window_ms=args.batch_window_ms,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_request_items=args.max_request_items,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model settings as JSON (a `models:` entry), or a JSON file")
    add_server_arguments(parser, unit="prompts")


def run(args: argparse.Namespace) -> None:
    from sal_core.serving.generation_server import serve_model

    serve_model(settings_from_arg(args.model, ModelSettings, "model"), server_options(args))
