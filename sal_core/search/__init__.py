"""Search methods (Best-of-N, PRM-guided beam search, DVTS), each batched over all problems of a shard.

`run_search` is the one entry point: it builds each problem's prompt with the model's chat template
and dispatches on `job.search.method`. Results come back one per problem, in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence

from sal_core.backends.base import GenerationBackend
from sal_core.config import GenerateJob
from sal_core.errors import ConfigError
from sal_core.prm.base import PRM
from sal_core.prompts import build_prompt
from sal_core.search.beam_search import beam_search
from sal_core.search.best_of_n import best_of_n
from sal_core.search.common import SearchResult
from sal_core.search.dvts import dvts

__all__ = ["SearchResult", "build_prompts", "run_search"]


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
    prompts = build_prompts(problems, job, backend)
    if settings.method == "best_of_n":
        results = best_of_n(prompts, settings, backend, first_index)
    elif prm is None:
        raise ConfigError(f"search.method {settings.method} needs a PRM to guide it (prm is missing)")
    elif settings.method == "beam_search":
        results = beam_search(problems, prompts, settings, backend, prm, first_index)
    elif settings.method == "dvts":
        results = dvts(problems, prompts, settings, backend, prm, first_index)
    else:
        raise ConfigError(f"search.method: {settings.method!r} is not a search method")
    if len(results) != len(problems):
        raise RuntimeError(f"{settings.method} returned {len(results)} results for {len(problems)} problems")
    return results
