"""Search methods (Best-of-N, PRM-guided beam search, DVTS, particle filtering), each batched over all
problems of a shard.

`run_search` is the one entry point: it builds each problem's prompt with the model's chat template
and dispatches on `job.search.method`. Results come back one per problem, in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence

from sal_core.backends.base import GenerationBackend
from sal_core.constants import METHODS
from sal_core.errors import ConfigError
from sal_core.prm.base import PRM
from sal_core.search.beam_search import beam_search
from sal_core.search.best_of_n import best_of_n
from sal_core.search.dvts import dvts
from sal_core.search.particles import particle_filtering
from sal_core.search.prompts import build_prompt
from sal_core.search.results import SearchResult
from sal_core.search.steps import Shard
from sal_core.settings.jobs import GenerateJob

__all__ = ["SearchResult", "build_prompts", "run_search"]

#: each search method by its config name (sal_core.constants.METHODS, in that order)
SEARCHES = dict(zip(METHODS, (best_of_n, beam_search, dvts, particle_filtering), strict=True))


def build_prompts(problems: Sequence[str], job: GenerateJob, backend: GenerationBackend) -> list[str]:
    """The text fed to the model for each problem (system prompt + chat template, ready for the answer)."""
    model = job.model
    return [build_prompt(backend.tokenizer, problem, model.system_prompt, model.chat_template) for problem in problems]


def run_search(
    problems: list[str], job: GenerateJob, backend: GenerationBackend, prm: PRM | None, first_index: int = 0
) -> list[SearchResult]:
    """Run `job.search` on all `problems` at once; one SearchResult per problem, in order.

    `first_index` is the dataset row of `problems[0]`: request seeds derive from dataset rows, so a
    problem gets the same samples whatever shard it falls in."""
    settings = job.search
    if settings.guided and prm is None:
        job.require_prm()  # names the missing setting, when the settings lack the PRM
        raise ValueError(f"{settings.method}: the job's PRM was not loaded")
    shard = Shard(problems, build_prompts(problems, job, backend), settings, backend, prm, first_index)
    method = SEARCHES.get(settings.method)
    if method is None:
        raise ConfigError(f"search.method: {settings.method!r} is not a search method")
    results = method(shard)
    if settings.guided:
        shard.continuation.report(settings.method)
    if len(results) != len(problems):
        raise RuntimeError(f"{settings.method} returned {len(results)} results for {len(problems)} problems")
    return results
