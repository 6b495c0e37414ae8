"""vLLM's engine vs the transformers engine on the embedded default's own searches, one after the other
in one run: Best-of-N n=8, beam search n=4 (hot/cold) and DVTS n=4, the SmolLM2 judge guiding the
last two in the same process.

Prints, per engine, the engine's start and, per search, its time, the tokens it generated, tokens/s,
and for vLLM its prefix-cache hit rate (the engine's own counters). On this machine vLLM is its CPU
build (`make vllm-env`), so this compares the two engines on CPU; on a GPU it compares them there.

    .venv-vllm/bin/python bench/vllm_vs_transformers.py [--problems 2] 2>/dev/null   # after `make demo`, ~2 min

Reads nothing outside the repository (config/config.yaml, the built-in problems, the demo's model).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RUNS = (("bon", "t0.8"), ("beam-n4.smollm2-judge", "hot-cold"), ("dvts.smollm2-judge", "t0.8"))


def measure(engine: str, grid, problems: list[str]) -> list[str]:
    """One engine: its start, then the three searches; one printed line each."""
    from sal_core.backends import load_backend
    from sal_core.prm import load_prm
    from sal_core.search import run_search

    runs = {(r.run_id, r.sampling): r for r in grid.runs if r.seed == 0}
    model = replace(runs[RUNS[0]].job.model, backend=engine)
    started = time.perf_counter()
    backend = load_backend(model, prm_in_process=True)
    lines = [f"{engine:12s} engine start {time.perf_counter() - started:7.1f} s"]
    prm = load_prm(grid.prms["smollm2-judge"], reuse=backend.weights)
    for key in RUNS:
        job = runs[key].job
        before = backend.counters() if hasattr(backend, "counters") else None
        started = time.perf_counter()
        results = run_search(problems, replace(job, model=model), backend, prm if job.prm else None)
        seconds = time.perf_counter() - started
        tokens = sum(r.generated_tokens for r in results)
        line = f"{engine:12s} {key[0]:22s} {key[1]:8s} {seconds:6.1f} s  {tokens:5d} tokens"
        line += f"  {tokens / seconds:6.1f} tok/s"
        if before is not None:
            after = backend.counters()
            hits = after["prefix_cache_hits"] - before["prefix_cache_hits"]
            queries = after["prefix_cache_queries"] - before["prefix_cache_queries"]
            counted = after["generation_tokens"] - before["generation_tokens"]
            line += f"  prefix-cache hits {100 * hits / max(queries, 1):5.1f}%  (engine counted {counted:.0f})"
        lines.append(line)
    if hasattr(backend, "close"):
        backend.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=2, help="built-in problems per search (default 2: a shard)")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from sal_core.pipeline.prepare_dataset import load_problems
    from sal_core.settings.grid import build_grid

    os.chdir(REPO)  # the config's model paths are relative to the repository
    grid = build_grid(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    problems = load_problems(grid.dataset)["problem"].tolist()[: args.problems]
    print(f"{len(problems)} problems, SmolLM2-135M (float32), the SmolLM2 judge in process")
    for engine in ("vllm", "transformers"):
        for line in measure(engine, grid, problems):
            print(line, flush=True)


if __name__ == "__main__":
    main()
