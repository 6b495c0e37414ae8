"""Exact continuation on vLLM's engine (its CPU build here; `make test-vllm`): greedy one-beam search,
DVTS and particle filtering on the real SmolLM2 write what vLLM's greedy whole-solution generation
writes, up to each method's finish rule; re-encoding does not, and counts the boundaries it changed.
Where the texts part, the transformers engine's logits on the same ids tell a near-tie from an error."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from continuation_helpers import check_prefix, default_job, default_problems, greedy_whole

from sal_core.backends.vllm_engine import NO_TRACKING
from sal_core.search import run_search
from sal_core.search.steps import states_answer

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm
os.environ.update(NO_TRACKING)

STEPWISE = {"max_tokens": 32, "num_iterations": 2, "stop_at_boxed": True, "lookahead": 0}


@pytest.fixture(scope="module")
def engines(smollm2_path: Path):
    """SmolLM2 on vLLM (the policy), and on transformers (the judge, and the logits of a near-tie check)."""
    from vllm.platforms import current_platform

    from sal_core.backends import load_backend
    from sal_core.backends.vllm_backend import VLLMBackend
    from sal_core.prm import load_prm

    if not (current_platform.is_cpu() or current_platform.is_cuda()):
        pytest.skip("vLLM finds neither its CPU build nor a CUDA GPU")
    job = default_job(smollm2_path, "dvts")
    engine = VLLMBackend(replace(job.model, backend="vllm", dtype="float32"))
    reference = load_backend(job.model)
    yield smollm2_path, engine, reference, load_prm(job.prm)
    engine.close()


def test_vllm_greedy_stepwise_search_continues_exactly(engines, caplog) -> None:
    path, engine, reference, prm = engines
    problems = default_problems(1)
    prompts, whole = greedy_whole(engine, default_job(path, "dvts", **STEPWISE), problems, 80)
    for method in ("beam_search", "dvts", "particle_filtering"):
        job = default_job(path, method, continuation="exact", **STEPWISE)
        job = replace(job, model=replace(job.model, backend="vllm"))
        for prompt, out, result in zip(prompts, whole, run_search(problems, job, engine, prm), strict=True):
            (text,) = result.completions
            assert states_answer(text), f"{method}: {text!r}"
            check_prefix(reference, prompt, out.token_ids, text, f"vLLM {method} exact")
    caplog.clear()
    with caplog.at_level("INFO", logger="sal_core.search.continuation"):
        reencoded = run_search(problems, default_job(path, "dvts", continuation="reencode", **STEPWISE), engine, prm)
    assert not any(out.text.startswith(r.completions[0]) for out, r in zip(whole, reencoded, strict=True))
    (line,) = [r.getMessage() for r in caplog.records if "re-encoding changed" in r.getMessage()]
    assert not line.split("changed the ids at ")[1].startswith("0 of"), line


def test_the_openai_backend_asks_vllm_for_ids_and_reads_them() -> None:
    """The request validates as vLLM's own CompletionRequest with `return_token_ids`; a vLLM choice's
    `token_ids`, through the openai client's types, are the ids the backend returns."""
    from openai.types import Completion
    from vllm.entrypoints.openai.completion import protocol
    from vllm.entrypoints.serve.engine.protocol import UsageInfo

    from sal_core.backends.base import GenerationRequest
    from sal_core.backends.openai_backend import completion_arguments, returned_ids

    kwargs = completion_arguments("policy", GenerationRequest("x", 0.0, stop=("\n\n",)), [1, 2], 7)
    body = {k: v for k, v in kwargs.items() if k != "extra_body"} | kwargs["extra_body"]
    assert protocol.CompletionRequest.model_validate(body).return_token_ids
    choice = protocol.CompletionResponseChoice(index=0, text="a\n\n", finish_reason="stop", token_ids=[64, 16506])
    usage = UsageInfo(prompt_tokens=2, completion_tokens=2, total_tokens=4)
    answer = protocol.CompletionResponse(model="policy", choices=[choice], usage=usage)
    (parsed,) = Completion.model_validate(answer.model_dump(mode="json")).choices
    assert returned_ids(parsed.model_extra or {}) == (64, 16506)
    assert returned_ids({}) is None
