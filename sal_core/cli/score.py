"""Score every reasoning step of a shard's completions with a process reward model.

Reads completions.parquet (problem_id, problem, completions), scores all completions of all its
problems in one batched PRM call (one forward pass per completion scores all its steps), and writes
problem_id + scores (per completion, per step, in [0, 1]) with parquet metadata prm=<name>.
`--prm` is the PRM settings as JSON: {"name", "type", "path", "device", "dtype", "batch_size",
"max_length"}, with type one of rlhflow, math-shepherd, skywork, qwen2.5-math, trl, or server (then
with "served_model" and "api", and the server's location in `--servers` under the PRM's name).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.cli.generate import add_servers_argument
from sal_core.pipeline.score import parse_prm_settings, score_shard
from sal_core.settings.endpoint import read_servers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--completions", required=True, type=Path, help="completions.parquet of one shard")
    parser.add_argument("--prm", required=True, help="PRM settings as a JSON object")
    parser.add_argument("--out", required=True, type=Path, help="scores parquet to write (atomically)")
    add_servers_argument(parser)


def run(args: argparse.Namespace) -> None:
    settings = parse_prm_settings(args.prm)
    score_shard(args.completions, settings, args.out, read_servers(args.servers))
