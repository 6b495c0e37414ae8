"""Tokenizer work of a step-wise search, before and after one tokenization per prompt per step (issue 26).

Runs beam search and DVTS on the embedded default's problems with the real SmolLM2-135M on CPU (the
SmolLM2 judge guiding), and counts what the policy's tokenizer did: encode calls, texts encoded,
tokens produced, decode calls, and the seconds spent in them. Run it on a checkout before the change
and after it (same settings) to compare:

    PYTHONPATH=. python bench/continuation_tokenize.py --threads 1                        # this checkout
    git worktree add /tmp/before <commit>; PYTHONPATH=/tmp/before python bench/continuation_tokenize.py

With `--continuation exact` (a checkout that has it) the prompts are not re-encoded at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class CountingTokenizer:
    """Delegates to a Hugging Face tokenizer, counting encode and decode calls and their time."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts = {"encode_calls": 0, "texts_encoded": 0, "tokens_encoded": 0, "decode_calls": 0}
        self.seconds = {"encode": 0.0, "decode": 0.0}

    def __call__(self, texts: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = self.inner(texts, **kwargs)
        self.seconds["encode"] += time.perf_counter() - start
        batch = texts if isinstance(texts, list) else [texts]
        ids = out["input_ids"] if isinstance(texts, list) else [out["input_ids"]]
        self.counts["encode_calls"] += 1
        self.counts["texts_encoded"] += len(batch)
        self.counts["tokens_encoded"] += sum(len(row) for row in ids)
        return out

    def decode(self, *args: Any, **kwargs: Any) -> str:
        start = time.perf_counter()
        out = self.inner.decode(*args, **kwargs)
        self.seconds["decode"] += time.perf_counter() - start
        self.counts["decode_calls"] += 1
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--continuation", default=None, help="exact | reencode (unset: the checkout's default)")
    args = parser.parse_args()

    import torch
    import yaml

    torch.set_num_threads(args.threads)
    from sal_core.backends import load_backend
    from sal_core.prm import load_prm
    from sal_core.search import run_search
    from sal_core.settings.grid import build_grid

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for approach in config["approaches"].values():  # a checkout before the setting knows no such key
        approach.pop("continuation", None)
    lines = (REPO / "sal_core" / "builtin" / "easy_math.jsonl").read_text().splitlines()[: args.problems]
    problems = [json.loads(line)["problem"] for line in lines]
    model_path = REPO / "resources" / "models" / "smollm2-135m-instruct"
    runs = {r.method: r.job for r in build_grid(config).runs if r.sampling == "t0.8" and r.seed == 0}
    backend = prm = None
    for method in ("beam_search", "dvts"):
        job = runs[method]
        search = job.search
        overrides = {"num_iterations": 3, "n": 4}
        if args.continuation:
            overrides["continuation"] = args.continuation
        elif "continuation" in {f.name for f in dataclasses.fields(search)}:
            overrides["continuation"] = "reencode"
        search = dataclasses.replace(search, **overrides)
        model = dataclasses.replace(job.model, path=str(model_path), device="cpu")
        if backend is None:
            backend = load_backend(model)
            prm = load_prm(dataclasses.replace(job.prm, path=str(model_path), device="cpu"))
            counting = CountingTokenizer(backend.tokenizer)
            backend.tokenizer = counting
        counting.counts = dict.fromkeys(counting.counts, 0)
        counting.seconds = dict.fromkeys(counting.seconds, 0.0)
        start = time.perf_counter()
        results = run_search(problems, dataclasses.replace(job, model=model, search=search), backend, prm)
        wall = time.perf_counter() - start
        tokens = sum(r.generated_tokens for r in results)
        mode = overrides.get("continuation", "reencode (before the setting)")
        print(
            f"{method} [{mode}]: wall {wall:.1f} s, generated tokens {tokens}, policy tokenizer: "
            + ", ".join(f"{k} {v}" for k, v in counting.counts.items())
            + ", "
            + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in counting.seconds.items())
        )


if __name__ == "__main__":
    main()
