"""The `score` step: every reasoning step of a shard's completions scored by one PRM.

All problems of the shard go to the PRM in one call, so it can batch completions of similar length
across problems. The settings are validated before any model is loaded, and the output is written
atomically, so a failed or killed job leaves no scores file behind.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from sal_core.errors import ShardError
from sal_core.job_devices import job_gpus_held
from sal_core.prm.base import scored_steps
from sal_core.settings.build import json_object
from sal_core.settings.endpoint import Servers
from sal_core.settings.jobs import PRMSettings
from sal_core.tables import read_metadata, read_table, write_table_atomic

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("problem_id", "problem", "completions")


def parse_prm_settings(text: str) -> PRMSettings:
    """PRMSettings from the JSON given to `--prm`; bad JSON or values raise ConfigError naming `prm`."""
    return PRMSettings.from_dict(json_object(text, "prm", "PRM settings"), "prm")


def reusable_search_scores(frame: pd.DataFrame, metadata: dict[str, str], settings: PRMSettings) -> list | None:
    """The in-search step scores, when the same PRM (every setting equal) guided the search and
    they cover every step of every final completion; otherwise None and the PRM runs."""
    if metadata.get("search_prm") != settings.fingerprint() or "search_scores" not in frame.columns:
        return None
    scores = []
    for comps, step_scores in zip(frame["completions"], frame["search_scores"], strict=True):
        if step_scores is None or len(step_scores) != len(comps):
            return None
        steps = (scored_steps(str(c), settings.family, settings.step_layout) for c in comps)
        if any(len(s) != len(c) for c, s in zip(steps, step_scores, strict=True)):
            return None
        scores.append([[float(x) for x in s] for s in step_scores])
    return scores


def score_shard(
    completions_path: str | Path, settings: PRMSettings, out_path: str | Path, servers: Servers | None = None
) -> Path:
    """Score `completions_path` with the PRM of `settings` (a served one at its location in `servers`) and
    write `problem_id`, `scores` and `prm_tokens` (per problem, the tokens the PRM read; 0 when the search's
    scores were reused) and `completion_prm_tokens` (the same per completion) to `out_path`."""
    frame = read_table(completions_path, quarantine_corrupt=True)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ShardError(f"{completions_path}: missing column(s) {', '.join(missing)}")
    rows = {"problem_id": [str(p) for p in frame["problem_id"]]}
    reused = reusable_search_scores(frame, read_metadata(completions_path), settings)
    if reused is not None:
        log.info("%s guided this search: reusing its step scores, no model loaded", settings.name)
        rows["scores"] = reused
        rows["prm_tokens"] = [0] * len(frame)
        rows["completion_prm_tokens"] = [[0] * len(comps) for comps in frame["completions"]]
        return write_table_atomic(pd.DataFrame(rows), out_path, metadata={"prm": settings.name, "reused": "search"})

    from sal_core.prm import load_prm  # imports torch: only when the PRM really runs

    problems = [str(p) for p in frame["problem"]]
    completions = [[str(c) for c in comps] for comps in frame["completions"]]
    with job_gpus_held(None, settings):  # its own GPU (locally: locked for it) before anything touches CUDA
        prm = load_prm(settings, servers)
        start = time.perf_counter()
        scores, read = prm.score_with_tokens(problems, completions)
    total = sum(len(c) for c in completions)
    log.info(
        "scored %d completions of %d problems with %s (%d tokens read) in %.1fs",
        total,
        len(problems),
        settings.name,
        sum(map(sum, read)),
        time.perf_counter() - start,
    )
    rows["scores"] = scores
    rows["prm_tokens"] = [sum(per_problem) for per_problem in read]
    rows["completion_prm_tokens"] = read
    return write_table_atomic(pd.DataFrame(rows), out_path, metadata={"prm": settings.name})
