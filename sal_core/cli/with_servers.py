"""Run a command (typically `snakemake`) with model and PRM servers around it, then stop them.

Serves named entries of a workflow config (the in-process ones: weights, dtype, batch sizes): a
`models:` entry with backend transformers through `sal serve`, with backend vllm through `vllm serve`
(via `sal announce`), a `prms:` entry through `sal serve-prm`, or with `--serve-vllm` (Qwen2.5-Math-PRM,
`type: qwen2.5-math`) through `vllm serve --runner pooling`, which `type: server, api: vllm-pooling`
reads; each under its entry's name, on a free port, writing SERVICES/<name>.json once it answers and
logging to LOGS/<name>.log. Here by default; with `--sbatch FLAGS` each server is a Slurm job (`sbatch
FLAGS --wrap ...`). Once all answer, runs the command; then stops the servers (or scancels their jobs),
also when the command fails or is interrupted, and exits with the command's status. The served config
points its `servers:` block at those service files. `make demo-served` runs:

    sal with-servers --config config/config.yaml --serve smollm2-135m --serve smollm2-judge \\
        -- snakemake --configfile config/served.yaml

On Slurm (docs/slurm.md): --sbatch="--gpus=1 --time=2-0" ... -- snakemake --profile profiles/slurm-served ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.cli.announce import add_command_arguments, trailing_command
from sal_core.errors import ConfigError
from sal_core.serving.around import run_with_servers, server_specs
from sal_core.settings.yaml_file import load_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="workflow config holding the entries to serve")
    parser.add_argument(
        "--serve", action="append", default=[], metavar="NAME", help="a models: or prms: entry to serve (repeat)"
    )
    parser.add_argument(
        "--serve-vllm",
        action="append",
        default=[],
        metavar="NAME",
        help="a prms: entry of type qwen2.5-math to serve with `vllm serve --runner pooling` (repeat)",
    )
    parser.add_argument("--services", type=Path, default=Path("services"), help="folder of the service files")
    parser.add_argument("--logs", type=Path, default=Path("logs/servers"), help="folder of the server logs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per server (default: 1)")
    parser.add_argument(
        "--sbatch", metavar="FLAGS", help='run each server as a Slurm job: sbatch FLAGS (write --sbatch="--gpus=1 ...")'
    )
    add_command_arguments(parser, 1800.0, "the servers to answer", "the command to run")


def run(args: argparse.Namespace) -> int:
    command = trailing_command(args, "with-servers")
    if not args.serve and not args.serve_vllm:
        raise ConfigError("with-servers: name the entries to serve with --serve NAME (or --serve-vllm NAME)")
    config = load_yaml(args.config, "--config")
    specs = server_specs(config or {}, args.serve, args.serve_vllm)
    return run_with_servers(specs, command, args.services, args.logs, args.threads, args.sbatch, args.timeout)
