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
import codecs
import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from sal_core.errors import ConfigError
from sal_core.learn.train_prm import TrainSettings, train_prm

HELP = {
    "base_model": "causal LM to start from (local folder or Hub name); a token-classification head is added",
    "dataset": "stepwise dataset: local .jsonl/.json/.parquet, or a Hub name (e.g. trl-lib/prm800k)",
    "split": "Hub split",
    "subset": "Hub dataset config",
    "limit": "use only the first N rows",
    "step_separator": "text after each step, with backslash escapes ('\\n\\n'); must match the search's steps",
    "max_length": "truncate prompt + steps to this many tokens",
    "max_completion_length": "truncate the steps to this many tokens first",
    "train_on_last_step_only": "label only the last step of each row",
    "epochs": "passes over the data (ignored when --max-steps is set)",
    "max_steps": "optimizer steps in all (-1: from --epochs)",
    "learning_rate": "peak learning rate (TRL's default 1e-5; SAL's recipes use 1e-6 for full fine-tuning)",
    "batch_size": "rows per device per step",
    "gradient_accumulation_steps": "batches per optimizer step",
    "warmup_steps": "linear warm-up steps",
    "weight_decay": "AdamW weight decay",
    "lr_scheduler": "transformers scheduler name (linear, cosine, constant, ...)",
    "bf16": "bf16 mixed precision (default: on a GPU that supports it)",
    "gradient_checkpointing": "trade compute for memory (SAL's recipes turn it on)",
    "disable_dropout": "switch dropout off, as TRL does by default",
    "freeze_base": "train only the classification head on the frozen model (cheapest; no LoRA)",
    "lora_r": "LoRA rank; 0 trains every weight",
    "lora_alpha": "LoRA scaling",
    "lora_dropout": "LoRA dropout (0 in effect while dropout is disabled)",
    "lora_target_modules": "modules that get adapters ('all-linear' or names such as q_proj v_proj)",
    "seed": "training seed",
    "logging_steps": "log the loss every N steps",
    "save_steps": "save a resumable checkpoint every N steps",
    "save_total_limit": "keep at most N checkpoints",
    "dataset_num_proc": "processes for tokenizing",
    "report_to": "trainer integrations (none, wandb, tensorboard)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output PRM folder (written atomically)")
    parser.add_argument("--config", help="training settings as a JSON object or a JSON file's path")
    parser.add_argument("--checkpoint-dir", type=Path, help="where checkpoints live (default: <out>.checkpoints)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep checkpoints after a finished run")
    for item in fields(TrainSettings):
        default = item.default if item.default is not MISSING else None
        kwargs: dict[str, Any] = {"default": None, "help": f"{HELP[item.name]} (default: {default!r})"}
        kind = str(item.type)
        if "bool" in kind:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif item.name == "lora_target_modules":
            kwargs["nargs"] = "+"
        elif "float" in kind:
            kwargs["type"] = float
        elif "int" in kind:
            kwargs["type"] = int
        parser.add_argument(_flag(item.name), **kwargs)


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """--config's keys, overridden by the flags given, validated."""
    data: dict[str, Any] = {}
    if args.config:
        text = Path(args.config).read_text() if Path(args.config).is_file() else args.config
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config: not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError("--config: must be a JSON object of training settings")
    for item in fields(TrainSettings):
        value = getattr(args, item.name)
        if value is not None:
            data[item.name] = value
    if isinstance(data.get("step_separator"), str) and args.step_separator is not None:
        data["step_separator"] = codecs.decode(data["step_separator"], "unicode_escape")
    if data.get("lora_target_modules") == ["all-linear"]:
        data["lora_target_modules"] = "all-linear"  # a keyword for peft, not a module name
    for key in ("base_model", "dataset"):
        if not data.get(key):
            raise ConfigError(f"{_flag(key)}: required (as a flag or a --config key)")
    return TrainSettings.from_dict(data, "training")


def run(args: argparse.Namespace) -> None:
    settings = settings_from_args(args)
    train_prm(settings, args.out, args.checkpoint_dir, keep_checkpoints=args.keep_checkpoints)
