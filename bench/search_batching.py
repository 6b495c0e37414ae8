"""Beam search batched over a shard vs one problem at a time, on the real SmolLM2-135M on CPU.

search-and-learn runs beam search one problem at a time, so every search step pays a generate call
and a PRM call per problem. Here a step is one generate call and one PRM call for all problems.
This prints both modes' call counts and wall times on the same problems and settings.

    python bench/search_batching.py --threads 1   # 16 built-in easy problems, n=4, beam_width=2, 3 steps, ~6.5 min
    python bench/search_batching.py --problems 4                  # quicker

The policy is also the in-search judge (RLHFlow format on SmolLM2, untrained for judging): the
point is the cost of the search machinery, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from shared_folder import SHARED

from sal_core.backends import load_backend
from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.prm import load_prm
from sal_core.prm.base import PRM, Scored
from sal_core.search import run_search
from sal_core.settings.jobs import GenerateJob

MODEL_DIR = Path("resources/models/smollm2-135m-instruct")


class CountingBackend(GenerationBackend):
    """Delegates to the real engine, counting calls and requests."""

    def __init__(self, inner: GenerationBackend) -> None:
        self.inner, self.tokenizer, self.max_model_len = inner, inner.tokenizer, inner.max_model_len
        self.calls = self.requests = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        self.calls += 1
        self.requests += len(requests)
        return self.inner.generate(requests)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class CountingPRM(PRM):
    """Delegates to the real PRM, counting calls."""

    def __init__(self, inner: PRM) -> None:
        self.inner, self.calls = inner, 0

    def score_with_tokens(self, problems, completions) -> Scored:
        self.calls += 1
        return self.inner.score_with_tokens(problems, completions)


def load_problems(count: int) -> tuple[list[str], str]:
    """The first `count` problems of the built-in easy set (or MATH-500 when it is missing)."""
    builtin = resources.files("sal_core") / "builtin" / "easy_math.jsonl"
    source = builtin if builtin.is_file() else SHARED / "data" / "math500.jsonl"
    lines = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    return [row["problem"] for row in lines[:count]], str(source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_DIR, help="SmolLM2 folder (built if missing)")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--beam-width", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per step")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    if not (args.model / "config.json").is_file():
        from sal_core.pipeline.prepare_model import prepare_model

        prepare_model("smollm2-135m-instruct", args.model)
    problems, source = load_problems(args.problems)
    job = GenerateJob.from_dict(
        {
            "model": {"name": "smollm2", "path": str(args.model), "max_model_len": 2048, "batch_size": 64},
            "search": {
                "method": "beam_search",
                "n": args.n,
                "beam_width": args.beam_width,
                "num_iterations": args.iterations,
                "max_tokens": args.max_tokens,
                "temperatures": [0.8],
            },
            "prm": {"name": "smollm2-judge", "type": "rlhflow", "path": str(args.model), "batch_size": 16},
        }
    )
    backend, prm = load_backend(job.model), load_prm(job.prm)
    print(
        f"{len(problems)} problems from {source}; beam search n={args.n} beam_width={args.beam_width} "
        f"iterations={args.iterations} max_tokens/step={args.max_tokens}; policy and judge: {args.model}"
    )

    rows = []
    for mode in ("batched", "one-at-a-time"):
        gen, judge = CountingBackend(backend), CountingPRM(prm)
        started = time.perf_counter()
        if mode == "batched":
            results = run_search(problems, job, gen, judge)
        else:
            results = [r for problem in problems for r in run_search([problem], job, gen, judge)]
        wall = time.perf_counter() - started
        tokens = sum(sum(r.completion_tokens) for r in results)
        assert len(results) == len(problems) and all(len(r.completions) == args.n for r in results)
        rows.append((mode, gen.calls, gen.requests, judge.calls, tokens, wall))

    print("\n| mode | generate calls | requests | PRM calls | completion tokens | wall s | tokens/s |")
    print("|---|---|---|---|---|---|---|")
    for mode, calls, requests, prm_calls, tokens, wall in rows:
        print(f"| {mode} | {calls} | {requests} | {prm_calls} | {tokens} | {wall:.1f} | {tokens / wall:.1f} |")
    print(f"\nspeed-up of batching: {rows[1][5] / rows[0][5]:.2f}x")


if __name__ == "__main__":
    main()
