"""One `generate` job: a shard of problems through one search method, written as completions.parquet.

The job and the shard are validated before any model is loaded, so a bad range or setting fails in
a second, not after minutes of model loading. Rows keep the problems' order and identity.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from sal_core.backends.gpu_memory import check_prm_fits, gpu_memory_utilization, vllm_share_beside_prm
from sal_core.constants import PROBLEM_COLUMNS
from sal_core.errors import ConfigError
from sal_core.job_devices import job_gpus_held, shares_policy_gpu
from sal_core.pipeline.prepare_dataset import read_problems
from sal_core.search.results import SearchResult
from sal_core.settings.build import json_object
from sal_core.settings.endpoint import Servers, location_of
from sal_core.settings.jobs import GenerateJob
from sal_core.tables import write_table_atomic

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["completions", "completion_tokens", "temperatures", "groups", "finish_reasons"]
#: per problem, all the compute of its search (docs/architecture.md, completions.parquet)
COMPUTE_COLUMNS = ["generated_tokens", "prm_tokens"]
#: DVTS only: the same per subtree, so evaluation can charge a budget of fewer subtrees
SUBTREE_COLUMNS = ["subtree_tokens", "subtree_prm_tokens"]
#: particle filtering only: each final particle's weight, the index of the selected one, and the
#: effective sample size after each step (one list per sweep)
PARTICLE_COLUMNS = ["weights", "selected", "ess"]


def parse_job(text: str) -> GenerateJob:
    """A GenerateJob from its JSON text (as the workflow passes it), or from a JSON file's path."""
    data = json_object(text, "--job", "'model', 'search' and (optionally) 'prm' settings")
    for key in ("model", "search"):
        if not isinstance(data.get(key), dict):
            raise ConfigError(f"--job: missing the {key!r} settings object")
    return GenerateJob.from_dict(data)


def completion_rows(problems: pd.DataFrame, results: list[SearchResult], with_scores: bool) -> list[dict[str, Any]]:
    """One output row per problem: its identity columns next to its own search result."""
    if len(results) != len(problems):
        raise RuntimeError(f"{len(results)} search results for {len(problems)} problems")
    rows = []
    for record, result in zip(problems[list(PROBLEM_COLUMNS)].to_dict("records"), results, strict=True):
        row = dict(record)
        row.update({column: list(getattr(result, column)) for column in RESULT_COLUMNS})
        row.update({column: int(getattr(result, column)) for column in COMPUTE_COLUMNS})
        if with_scores:
            row["search_scores"] = [list(s) for s in result.search_scores or []]
        if result.subtree_tokens is not None:
            row.update({column: [int(t) for t in getattr(result, column) or []] for column in SUBTREE_COLUMNS})
        if result.weights is not None:
            row.update(particle_columns(result))
        rows.append(row)
    return rows


def particle_columns(result: SearchResult) -> dict[str, Any]:
    """A particle filtering result's PARTICLE_COLUMNS: one weight per returned particle (duplicates
    included), the selected particle's index, the ESS after each step of each sweep."""
    weights = [float(w) for w in result.weights]
    if len(weights) != len(result.completions):
        raise RuntimeError(f"{len(weights)} particle weights for {len(result.completions)} completions")
    selected = result.selected
    if selected is None or not 0 <= selected < len(weights):
        raise RuntimeError(f"selected particle {selected} is not one of the {len(weights)} returned")
    return {
        "weights": weights,
        "selected": int(selected),
        "ess": [[float(e) for e in sweep] for sweep in result.ess or []],
    }


def load_models(job: GenerateJob, servers: Servers) -> tuple[Any, Any]:
    """The job's backend and in-search PRM (None for Best-of-N). Served ones connect to their servers;
    missing server locations fail before any model loads."""
    guided = job.search.guided
    location_of(job.model, servers, "model")
    if guided and job.prm is not None:
        location_of(job.prm, servers, "PRM")
    prm_in_process = guided and job.prm is not None and not job.prm.served
    # imported here: torch and transformers load only once the inputs are known to be good
    from sal_core.backends import load_backend
    from sal_core.prm import load_prm, shares_prefixes

    load_started = time.perf_counter()
    # a PRM on a GPU of its own (prms.<name>.device: cuda:1) leaves vLLM the whole of the policy's
    beside = prm_in_process and shares_policy_gpu(job.model, job.prm)
    model = job.model
    if beside and model.backend == "vllm":  # the PRM's room is planned before the engine starts
        share = vllm_share_beside_prm(model, job.prm, shares_prefixes(job.prm.type))
        model = model if share is None else replace(model, gpu_memory_utilization=share)
    backend = load_backend(model, servers, prm_in_process=beside)
    prm = None
    if guided:
        if prm_in_process:
            utilization = gpu_memory_utilization(model, prm_in_process=beside)
            check_prm_fits(model, job.prm, utilization, shares_prefixes(job.prm.type))
        prm = load_prm(job.prm, servers, reuse=backend.weights)
    log.info(
        "loaded %s%s in %.1f s",
        job.model.name,
        f" and PRM {job.prm.name}" if prm else "",
        time.perf_counter() - load_started,
    )
    return backend, prm


def log_engine_counters(backend: Any, tokens: int) -> None:
    """The engine's own counts beside ours, where the engine keeps them (vLLM): the generated tokens
    we charge should be the tokens it generated, and its prefix-cache hit rate says what it reused."""
    if not hasattr(backend, "counters"):
        return
    counts = backend.counters()
    queries = counts["prefix_cache_queries"]
    log.info(
        "engine counters: %d prompt tokens, %d generated (charged: %d%s), prefix-cache hit rate %.1f%%",
        counts["prompt_tokens"],
        counts["generation_tokens"],
        tokens,
        "" if counts["generation_tokens"] == tokens else ", MISMATCH",
        100 * counts["prefix_cache_hits"] / queries if queries else 0.0,
    )


def generate_shard(
    problems_path: str | Path, start: int, end: int, job: GenerateJob, out: str | Path, servers: Servers | None = None
) -> Path:
    """Run `job` on problems [start, end) of `problems_path` and write the completions table to `out`;
    a served model or PRM is reached at its location in `servers` (by name)."""
    problems = read_problems(problems_path, start, end)
    settings = job.search
    guided = settings.guided
    in_process_prm = job.prm if guided and job.prm is not None and not job.prm.served else None
    # the job's own GPUs (locally: locked for it) before anything touches CUDA, until its engine stopped
    with job_gpus_held(job.model, in_process_prm):
        backend, prm = load_models(job, servers or {})
        from sal_core.search import run_search

        started = time.perf_counter()
        try:
            results = run_search(problems["problem"].tolist(), job, backend, prm, first_index=start)
            elapsed = time.perf_counter() - started
            tokens = sum(r.generated_tokens for r in results)
            log_engine_counters(backend, tokens)
        finally:
            if hasattr(backend, "close"):
                backend.close()
    log.info(
        "%s n=%d on problems %d-%d: %d completions, %d tokens generated (%d in the returned paths), "
        "%d read by the in-search PRM, in %.1f s (%.1f generated tokens/s)",
        settings.method,
        settings.n,
        start,
        end,
        sum(len(r.completions) for r in results),
        tokens,
        sum(sum(r.completion_tokens) for r in results),
        sum(r.prm_tokens for r in results),
        elapsed,
        tokens / elapsed if elapsed > 0 else float("nan"),
    )

    metadata = {
        "method": settings.method,
        "n": str(settings.n),
        "beam_width": str(settings.beam_width),
        "seed": str(settings.seed),
    }
    if job.prm is not None and not (settings.keep_unfinished and settings.lookahead):
        # lets `sal score` reuse the in-search step scores when it is asked for the same PRM (not
        # when unfinished DVTS candidates were scored with their lookahead rollouts)
        metadata["search_prm"] = job.prm.fingerprint()
    return write_table_atomic(completion_rows(problems, results, guided), out, metadata=metadata)
