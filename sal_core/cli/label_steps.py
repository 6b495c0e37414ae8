"""Label every step of a run's completions by rollouts, the Math-Shepherd way, as PRM training data.

Reads a completions or merged table (problem, answer, completions), continues each step's prefix
k times with the policy (--model, as in a generate job; one batched generate call), grades the
rollouts' final answers against the gold answer, and writes stepwise rows (prompt, completions =
steps, labels, mc_values): a step is good when at least one rollout from it reaches the gold
answer. Output: parquet, or JSON lines when --out ends in .jsonl; `sal train-prm --dataset` reads both.
Settings come from flags, or from --config (a JSON object or file with the same keys, underscored),
flags winning; the workflow passes --config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.cli.generate import add_servers_argument
from sal_core.cli.options import add_settings_arguments, settings_from_args
from sal_core.learn.label_steps import LabelSettings, label_steps
from sal_core.settings.build import json_object
from sal_core.settings.endpoint import read_servers
from sal_core.settings.jobs import ModelSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--completions", required=True, type=Path, help="completions or merged parquet/jsonl")
    parser.add_argument("--model", required=True, help="policy model settings as JSON (as a generate job's 'model')")
    parser.add_argument("--out", required=True, type=Path, help="stepwise dataset to write (.parquet or .jsonl)")
    parser.add_argument("--workers", type=int, default=2, help="grading processes")
    add_servers_argument(parser)
    add_settings_arguments(parser, LabelSettings, lists=("stop",))


def run(args: argparse.Namespace) -> None:
    model = ModelSettings.from_dict(json_object(args.model, "--model", "model settings"), "model")
    settings = settings_from_args(args, LabelSettings, "labeling", escaped=("stop",))
    label_steps(args.completions, model, settings, args.out, workers=args.workers, servers=read_servers(args.servers))
