"""Label every step of a run's completions by rollouts, the Math-Shepherd way, as PRM training data.

Reads a completions or merged table (problem, answer, completions), continues each step's prefix
k times with the policy (--model, as in a generate job; one batched generate call), grades the
rollouts' final answers against the gold answer, and writes stepwise rows (prompt, completions =
steps, labels, mc_values): a step is good when at least one rollout from it reaches the gold
answer. Output: parquet, or JSON lines when --out ends in .jsonl; `sal train-prm --dataset` reads both.
"""

from __future__ import annotations

import argparse
import codecs
import json
from pathlib import Path

from sal_core.errors import ConfigError
from sal_core.learn.label_steps import LabelSettings, label_steps
from sal_core.settings.jobs import ModelSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = LabelSettings()
    parser.add_argument("--completions", required=True, type=Path, help="completions or merged parquet/jsonl")
    parser.add_argument("--model", required=True, help="policy model settings as JSON (as a generate job's 'model')")
    parser.add_argument("--out", required=True, type=Path, help="stepwise dataset to write (.parquet or .jsonl)")
    parser.add_argument("--k", type=int, default=defaults.k, help="rollouts per step")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens, help="token budget of each rollout")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="rollout temperature")
    parser.add_argument("--top-p", type=float, default=defaults.top_p, help="rollout nucleus sampling")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="run seed; each rollout's seed derives from it")
    parser.add_argument("--max-completions", type=int, help="label only the first N completions of each problem")
    parser.add_argument("--max-steps", type=int, help="label only the first N steps of each completion")
    parser.add_argument(
        "--stop", action="append", default=[], help="string that ends a rollout, backslash escapes allowed (repeatable)"
    )
    parser.add_argument("--workers", type=int, default=2, help="grading processes")


def run(args: argparse.Namespace) -> None:
    try:
        model = json.loads(Path(args.model).read_text() if Path(args.model).is_file() else args.model)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--model: not valid JSON ({err})") from err
    if not isinstance(model, dict):
        raise ConfigError("--model: must be a JSON object of model settings")
    settings = LabelSettings(
        k=args.k,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        max_completions=args.max_completions,
        max_steps=args.max_steps,
        stop=tuple(codecs.decode(s, "unicode_escape") for s in args.stop),
    )
    label_steps(args.completions, ModelSettings.from_dict(model, "model"), settings, args.out, workers=args.workers)
