"""Shared prefixes computed once vs every input in full, on the embedded default's own jobs (CPU).

sal_core.backends.shared_prefix runs the prefix that inputs of a batch share (a system prompt, a
problem, a beam's past steps) once. This times the embedded default's guided searches (beam search
n=4, DVTS) and its Best-of-N scoring both ways, alternating, on the same problems, seeds and weights,
and says whether the completions came out the same and how far the step scores moved.

    python bench/shared_prefix.py [--problems 2] [--repeat 2] 2>/dev/null   # after `make demo` (its model), ~2.5 min

Reads nothing outside the repository (config/config.yaml, the built-in problems).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from sal_core.backends import load_backend, transformers_backend
from sal_core.pipeline.prepare_dataset import load_problems
from sal_core.prm import load_prm
from sal_core.search import run_search
from sal_core.settings.grid import build_grid

REPO = Path(__file__).resolve().parent.parent
RUNS = (("beam-n4.smollm2-judge", "hot-cold"), ("dvts.smollm2-judge", "t0.8"), ("bon", "t0.8"))


@contextlib.contextmanager
def sharing(on: bool, prm) -> Iterator[None]:
    """Prefix sharing on (as shipped) or off (one padded pass per batch) for the engine and the PRM."""
    split, shares = transformers_backend.worth_splitting, prm.shares_prefixes
    if not on:
        transformers_backend.worth_splitting = lambda seqs: None
        prm.shares_prefixes = False
    try:
        yield
    finally:
        transformers_backend.worth_splitting, prm.shares_prefixes = split, shares


def timed(on: bool, prm, work) -> tuple[float, object]:
    with sharing(on, prm):
        start = time.perf_counter()
        out = work()
        return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=2, help="built-in problems per search (default 2: a shard)")
    parser.add_argument("--repeat", type=int, default=2, help="timings per mode; the best is kept")
    args = parser.parse_args()
    grid = build_grid(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    problems = load_problems(grid.dataset)["problem"].tolist()[: args.problems]
    runs = {(r.run_id, r.sampling): r for r in grid.runs if r.seed == 0}
    backend = load_backend(runs[RUNS[0]].job.model)
    prm = load_prm(grid.prms["smollm2-judge"], reuse=backend.weights)
    print(f"{len(problems)} problems, SmolLM2-135M, 1 thread; best of {args.repeat} per mode")
    for key in RUNS:
        job = runs[key].job
        search = lambda job=job: run_search(problems, job, backend, prm if job.prm else None)  # noqa: E731
        report(f"search {key[0]} {key[1]}", prm, search, args.repeat, same_completions)
    bon = run_search(problems, runs[RUNS[2]].job, backend, None)
    completions = [r.completions for r in bon]
    report("score Best-of-N n=8", prm, lambda: prm.score(problems, completions), args.repeat, score_gap)


def same_completions(shared, full) -> str:
    return f"same completions: {[r.completions for r in shared] == [r.completions for r in full]}"


def score_gap(shared, full) -> str:
    gaps = [
        abs(a - b)
        for p, q in zip(shared, full, strict=True)
        for s, t in zip(p, q, strict=True)
        for a, b in zip(s, t, strict=True)
    ]
    return f"largest step-score difference: {max(gaps):.1e}"


def report(label: str, prm, work, repeat: int, compare) -> None:
    times: dict[bool, list[float]] = {True: [], False: []}
    outs = {}
    for _ in range(repeat):
        for on in (True, False):
            seconds, outs[on] = timed(on, prm, work)
            times[on].append(seconds)
    shared, full = min(times[True]), min(times[False])
    timing = f"shared {shared:6.2f} s  full {full:6.2f} s  ({full / shared:.2f}x)"
    print(f"{label:38s} {timing}  {compare(outs[True], outs[False])}")


if __name__ == "__main__":
    main()
