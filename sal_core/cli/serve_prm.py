"""Serve one process reward model over HTTP, so that many `score`, beam search and DVTS jobs share it.

Loads the PRM once (any type: rlhflow, math-shepherd, skywork, qwen2.5-math, trl, verifier), then answers
POST /v1/score (problems + completions -> step scores), vLLM's POST /pooling for token-classifier
PRMs, GET /health and GET /v1/info (model, limits, request/batch counters). Requests arriving
together are merged into one batched PRM call. Jobs reach it with a `type: server` PRM whose
`url` is http://HOST:PORT or whose `service_file` is the file written here once the server answers.
Stops on SIGTERM/SIGINT and then removes its service file.
"""

from __future__ import annotations

import argparse

from sal_core.cli.serve import add_server_arguments, server_options
from sal_core.serving.app import settings_from_arg
from sal_core.serving.prm_server import serve_prm
from sal_core.settings.jobs import PRMSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prm", required=True, help="PRM settings as JSON (as for `sal score`), or a JSON file")
    add_server_arguments(parser, unit="completions")


def run(args: argparse.Namespace) -> None:
    serve_prm(settings_from_arg(args.prm, PRMSettings, "prm"), server_options(args))
