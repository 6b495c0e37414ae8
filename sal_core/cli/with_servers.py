"""Run a command (typically `snakemake`) with model and PRM servers around it, on this machine.

Starts `sal serve` for each named `models:` entry and `sal serve-prm` for each named `prms:` entry of
a workflow config (the in-process entries: their weights, dtype and batch sizes), each on a free
port, writing its service file to SERVICES/<name>.json and its log to LOGS/<name>.log, and serving
under the entry's name. Once all answer, runs the command; then stops the servers, also when the
command fails or is interrupted, and exits with the command's status. A served config points its
`servers:` block at those service files, e.g. `make demo-served`:

    sal with-servers --config config/config.yaml --serve smollm2-135m --serve smollm2-judge \\
        -- snakemake --configfile config/served.yaml

On a cluster, servers run as their own Slurm jobs instead (docs/slurm.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from sal_core.errors import ConfigError
from sal_core.serving.launch import run_with_servers, server_specs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="workflow config holding the entries to serve")
    parser.add_argument(
        "--serve", action="append", required=True, metavar="NAME", help="a models: or prms: entry to serve (repeat)"
    )
    parser.add_argument("--services", type=Path, default=Path("services"), help="folder of the service files")
    parser.add_argument("--logs", type=Path, default=Path("logs/servers"), help="folder of the server logs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per server (default: 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("with-servers: give the command to run after `--`")
    try:
        config = yaml.safe_load(args.config.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"--config: cannot read {args.config} ({err})") from err
    specs = server_specs(config or {}, args.serve)
    return run_with_servers(specs, command, args.services, args.logs, args.threads)
