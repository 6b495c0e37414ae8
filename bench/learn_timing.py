"""How long the learn loop's steps take on CPU, for sizing config/experiments/learn_cpu.yaml.

    OMP_NUM_THREADS=1 .venv/bin/python bench/learn_timing.py --model DIR [--problems 16 --samples 4 ...]

Stages, timed one by one on problems from the built-in GSM8K training pool (no ../shared needed):
sample (n completions per problem, one generate call) -> label-steps (k rollouts per step prefix)
-> train-prm (a PRM on the labels, LoRA or full) -> processbench (the untrained judge, the model
itself as an RLHFlow-style PRM, and the trained PRM on the shipped subset). Prints one line per stage.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from sal_core.backends import load_backend
from sal_core.backends.base import GenerationRequest
from sal_core.learn.label_steps import LabelSettings, label_steps
from sal_core.learn.processbench import run_processbench
from sal_core.learn.train_prm import TrainSettings, train_prm
from sal_core.pipeline.prepare_dataset import load_problems
from sal_core.search.prompts import build_prompt
from sal_core.search.temperatures import derive_seed
from sal_core.settings.dataset import DatasetSettings
from sal_core.settings.jobs import ModelSettings, PRMSettings


def sample(backend, model: ModelSettings, problems: pd.DataFrame, n: int, max_tokens: int, out: Path) -> None:
    prompts = [
        build_prompt(backend.tokenizer, p, model.system_prompt, model.chat_template) for p in problems["problem"]
    ]
    requests = [
        GenerationRequest(prompt, 0.8, 1.0, max_tokens, (), derive_seed(0, i, j))
        for i, prompt in enumerate(prompts)
        for j in range(n)
    ]
    outputs = backend.generate(requests)
    texts = [o.text for o in outputs]
    tokens = sum(o.num_tokens for o in outputs)
    problems.assign(completions=[texts[i * n : (i + 1) * n] for i in range(len(problems))]).to_parquet(out)
    print(f"  sampled {len(requests)} completions, {tokens} tokens", flush=True)


def _count(outputs: list, tokens_out: list[int]) -> list:
    tokens_out[-1] = sum(o.num_tokens for o in outputs)
    return outputs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pool", default="gsm8k_train_pool", help="built-in problem set to sample from")
    parser.add_argument(
        "--prompt-from", help="a config file whose first model's chat_template and system_prompt to use (few-shot)"
    )
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--sample-tokens", type=int, default=256)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--rollout-tokens", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--freeze-base", action="store_true", help="train the head alone (then no LoRA)")
    parser.add_argument("--pb-limit", type=int, default=50, help="ProcessBench samples per split")
    return parser.parse_args()


def policy(args: argparse.Namespace) -> ModelSettings:
    prompt = {}
    if args.prompt_from:
        first = next(iter(yaml.safe_load(Path(args.prompt_from).read_text())["models"].values()))
        prompt = {k: first[k] for k in ("chat_template", "system_prompt") if k in first}
    return ModelSettings(name="policy", path=args.model, device="cpu", max_model_len=2048, **prompt)


def label(args: argparse.Namespace, backend, model: ModelSettings, work: Path) -> None:
    labels = LabelSettings(k=args.k, max_tokens=args.rollout_tokens, max_steps=args.max_steps)
    counted = backend.generate
    tokens_out: list[int] = []
    backend.generate = lambda requests: tokens_out.append(0) or _count(counted(requests), tokens_out)
    rows = label_steps(work / "merged.parquet", model, labels, work / "steps.jsonl", workers=1, backend=backend)
    backend.generate = counted
    good = sum(sum(x) for x in rows["labels"]) / max(1, sum(len(x) for x in rows["labels"]))
    print(f"  rollouts: {sum(tokens_out)} generated tokens", flush=True)
    print(f"  labelled {len(rows)} completions, {sum(len(x) for x in rows['labels'])} steps, {good:.1%} good")


def train(args: argparse.Namespace, work: Path) -> None:
    settings = TrainSettings(
        base_model=args.model,
        dataset=str(work / "steps.jsonl"),
        max_steps=args.train_steps,
        batch_size=8,
        learning_rate=1e-3 if args.freeze_base else 1e-4 if args.lora_r else 2e-5,
        lora_r=0 if args.freeze_base else args.lora_r,
        freeze_base=args.freeze_base,
        logging_steps=5,
        save_steps=10,
        max_length=1024,
    )
    result = train_prm(settings, work / "prm")
    print(f"  loss {result.losses[0]['loss']:.3f} -> {result.losses[-1]['loss']:.3f}")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="learn-timing-"))
    model = policy(args)
    problems = load_problems(DatasetSettings(name="pool", source="builtin", path=args.pool)).iloc[: args.problems]
    times = {}
    start = time.perf_counter()
    backend = load_backend(model)
    sample(backend, model, problems, args.samples, args.sample_tokens, work / "merged.parquet")
    stages = (("label", lambda: label(args, backend, model, work)), ("train", lambda: train(args, work)))
    times["sample"] = time.perf_counter() - start
    for stage, run in stages:
        start = time.perf_counter()
        run()
        times[stage] = time.perf_counter() - start
    for name, kind, path in (("untrained", "rlhflow", args.model), ("trained", "trl", str(work / "prm"))):
        start = time.perf_counter()
        prm = PRMSettings(name=name, type=kind, path=path, device="cpu", batch_size=8, max_length=2048)
        table = run_processbench([prm], work / "pb", limit=args.pb_limit)[0]
        times[f"processbench {name}"] = time.perf_counter() - start
        print(f"  {name}: average F1 {table['f1'].iloc[-1]:.1f}, {times[f'processbench {name}']:.1f} s", flush=True)
    for stage, seconds in times.items():
        print(f"{stage:>24}: {seconds:7.1f} s")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
