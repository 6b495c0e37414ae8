"""Run any OpenAI-compatible server (`vllm serve`, ...) with a service file, as `sal serve` has one.

Picks a free port, runs the command after `--` with `--host HOST --port PORT` appended, writes the
service file (url, host, port, Slurm job id, ...) once GET /health answers 200, and removes it when
the server stops or this command gets SIGTERM/SIGINT (passed on to the server). Jobs then find the
server through the file (`servers: NAME: {service_file: FILE, wait: ...}`), e.g. on a GPU node:

    export VLLM_API_KEY=...   # the key clients send (servers.NAME.api_key_env), never on a command line
    sal announce --service-file services/qwen.json --host 0.0.0.0 -- \
        vllm serve Qwen/Qwen2.5-Math-1.5B-Instruct --served-model-name qwen-1.5b \
        --middleware sal_core.serving.vllm_auth.RequireKey

A `vllm serve` without that middleware (the key on every route, not only under /v1) or without the key
in VLLM_API_KEY is refused (docs/serving.md, Security).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.errors import ConfigError
from sal_core.serving.announce import announce


def add_command_arguments(parser: argparse.ArgumentParser, timeout: float, waits_for: str, command: str) -> None:
    """`--timeout` and the command after `--`, shared with `sal with-servers`."""
    help_text = f"seconds to wait for {waits_for} (default: {timeout:g})"
    parser.add_argument("--timeout", type=float, default=timeout, help=help_text)
    parser.add_argument("command", nargs=argparse.REMAINDER, help=f"-- then {command}")


def trailing_command(args: argparse.Namespace, step: str) -> list[str]:
    """The command given after `--`; ConfigError when there is none."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError(f"{step}: give the command to run after `--`")
    return command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service-file", required=True, type=Path, help="JSON file to write once the server answers")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all; default 127.0.0.1)")
    add_command_arguments(parser, 3600.0, "/health (a large model loads for minutes)", "the server command")


def run(args: argparse.Namespace) -> int:
    return announce(trailing_command(args, "announce"), args.service_file, args.host, args.timeout)
