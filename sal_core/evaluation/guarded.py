"""A pool of grading workers that survives C-level hangs: search-and-learn's protocol and the `sal`
grader both run their per-problem work under it (sal_core.evaluation.sal_protocol, graders_sal)."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from sal_core.evaluation.grading import worker_context


def _warm() -> None:
    """Import sympy and both parsers before forking, so workers start warm."""
    from sal_core.evaluation.sal_equal import _latex_to_sympy, _python_to_sympy

    _latex_to_sympy("\\frac{1}{2}")
    _python_to_sympy("1/2")


def run_guarded(
    work: Callable[[tuple[Any, bool]], Any], jobs: list, limits: list[float], workers: int, desc: str, progress: bool
) -> tuple[list, set[int]]:
    """`work((job, symbolic))` for every job in `workers` processes, results in order, and the indices
    of the jobs re-run with `symbolic` False because they passed their limit.

    Checks are time-limited inside the worker (SIGALRM); the limit only catches C-level hangs an
    alarm cannot interrupt: the pool is killed and restarted, finished jobs are kept.
    """
    _warm()
    done: dict[int, Any] = {}
    plain: set[int] = set()  # jobs to re-run without sympy
    bar = tqdm(total=len(jobs), desc=desc, unit="problem", disable=not progress)
    try:
        while len(done) < len(jobs):
            todo = [i for i in range(len(jobs)) if i not in done]
            with worker_context().Pool(max(1, workers)) as pool:
                results = pool.imap(work, [(jobs[i], i not in plain) for i in todo])
                for i in todo:
                    try:
                        done[i] = results.next(timeout=limits[i])
                    except mp.TimeoutError:
                        plain.add(i)
                        break
                    bar.update()
    finally:
        bar.close()
    return [done[i] for i in range(len(jobs))], plain
