"""Run any OpenAI-compatible server (`vllm serve`, ...) with a service file, as `sal serve` has one.

Picks a free port, runs the command after `--` with `--host HOST --port PORT` appended, writes the
service file (url, host, port, Slurm job id, ...) once GET /health answers 200, and removes it when
the server stops or this command gets SIGTERM/SIGINT (passed on to the server). Jobs then find the
server through the file (`servers: NAME: {service_file: FILE, wait: ...}`), e.g. on a GPU node:

    sal announce --service-file services/qwen.json --host 0.0.0.0 -- \
        vllm serve Qwen/Qwen2.5-Math-1.5B-Instruct --served-model-name qwen-1.5b
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.errors import ConfigError
from sal_core.serving.announce import announce


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service-file", required=True, type=Path, help="JSON file to write once the server answers")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all; default 127.0.0.1)")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds to wait for /health (default: 3600, a large model loads)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the server command")


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("announce: give the server command after `--`")
    return announce(command, args.service_file, args.host, args.timeout)
