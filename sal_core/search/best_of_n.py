"""Best-of-N: n independent full solutions per problem, all problems x n in one generate call.

No PRM is involved while sampling; the completions are scored afterwards by `sal score`, so one
set of samples can be judged by several PRMs.
"""

from __future__ import annotations

from sal_core.backends.base import GenerationOutput, GenerationRequest
from sal_core.search.results import SearchResult
from sal_core.search.steps import Shard, token_budget, warn_pruned
from sal_core.search.temperatures import derive_seed, temperature_list


def cut_stop(output: GenerationOutput, stops: list[str]) -> str:
    """The text without the stop string it ended at (the backends keep it, as search steps need):
    a stop string marks where the solution is over, so it is no part of the answer or of a step."""
    if output.finish_reason == "stop":
        for stop in stops:
            if output.text.endswith(stop):
                return output.text[: -len(stop)]
    return output.text


def best_of_n(shard: Shard) -> list[SearchResult]:
    """Sample `settings.n` completions for each prompt; temperatures by `temperature_list` over n
    (split by ratio in blocks or interleaved, or cycled), `settings.stop` cut from the texts, seeds per
    (run seed, dataset row, sample index), so sharding never changes them. A prompt too long for
    the context window gets empty completions with finish_reason 'length' (and a warning) instead
    of failing the shard."""
    prompts, settings, backend, first_index = shard.prompts, shard.settings, shard.backend, shard.first_index
    temperatures = temperature_list(
        settings.n, settings.temperatures, settings.temperature_ratios, settings.temperature_layout
    )
    requests: list[GenerationRequest] = []
    owners: list[tuple[int, int]] = []
    too_long: list[int] = []
    # each prompt's ids, tokenized once for the shard (Shard.continuation): the budget and the engine use them
    for p, (prompt, ids) in enumerate(zip(prompts, shard.continuation.prompt_ids, strict=True)):
        budget = token_budget(backend.max_model_len, len(ids), settings.max_tokens)
        if budget is None:
            too_long.extend([p] * settings.n)
            continue
        for j, temperature in enumerate(temperatures):
            seed = derive_seed(settings.seed, first_index + p, j)
            request = GenerationRequest(prompt, temperature, settings.top_p, budget, tuple(settings.stop), seed, ids)
            requests.append(request)
            owners.append((p, j))
    warn_pruned("best_of_n", 0, too_long, backend.max_model_len)

    outputs = backend.generate(requests) if requests else []
    texts = [[""] * settings.n for _ in prompts]
    tokens = [[0] * settings.n for _ in prompts]
    reasons = [["length"] * settings.n for _ in prompts]
    for (p, j), out in zip(owners, outputs, strict=True):
        texts[p][j], tokens[p][j], reasons[p][j] = cut_stop(out, settings.stop), out.num_tokens, out.finish_reason
    return [
        SearchResult(
            completions=texts[p],
            completion_tokens=tokens[p],
            temperatures=list(temperatures),
            groups=list(range(settings.n)),
            finish_reasons=reasons[p],
            search_scores=None,
            generated_tokens=sum(tokens[p]),
        )
        for p in range(len(prompts))
    ]
