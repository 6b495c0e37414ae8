"""Fine-tune a token-classification PRM on stepwise-supervision data, as TRL's PRMTrainer does.

The dataset has one row per solution: `prompt` (the problem), `completions` (its steps) and
`labels` (one bool per step); a local .jsonl/.json/.parquet file (e.g. from `sal label-steps`) or a
Hub dataset such as trl-lib/prm800k. The output folder is a PRM for `type: trl` that records its
step separator. Checkpoints go to <out>.checkpoints; rerunning the same command resumes from the
last one. Settings come from flags, or from --config (a JSON object or file with the same keys,
underscored), flags winning. On several GPUs: `accelerate launch -m sal_core.cli train-prm ...`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sal_core.cli.options import add_settings_arguments, settings_from_args
from sal_core.learn.train_prm import TrainSettings, train_prm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output PRM folder (written atomically)")
    parser.add_argument("--checkpoint-dir", type=Path, help="where checkpoints live (default: <out>.checkpoints)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep checkpoints after a finished run")
    add_settings_arguments(parser, TrainSettings, lists=("dataset", "lora_target_modules"))


def training_settings(args: argparse.Namespace) -> TrainSettings:
    """--config's keys, overridden by the flags given, validated."""
    settings = settings_from_args(
        args, TrainSettings, "training", escaped=("step_separator",), required=("base_model", "dataset")
    )
    if isinstance(settings.dataset, list) and len(settings.dataset) == 1:
        settings.dataset = settings.dataset[0]  # one file or Hub name, as given
    if settings.lora_target_modules == ["all-linear"]:
        settings.lora_target_modules = "all-linear"  # a keyword for peft, not a module name
    return settings


def run(args: argparse.Namespace) -> None:
    settings = training_settings(args)
    train_prm(settings, args.out, args.checkpoint_dir, keep_checkpoints=args.keep_checkpoints)
