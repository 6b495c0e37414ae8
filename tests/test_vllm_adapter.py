"""The vLLM adapter against vLLM's own classes, no GPU needed: the SamplingParams and TokensPrompt it
builds, what vLLM's own prompt renderer (the step `LLM.generate` runs before the engine) makes of
them, and the mapping of real RequestOutput / CompletionOutput objects.

Run in the separate environment that has vLLM (`make test-vllm`); skipped where vLLM does not import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_tokenizers import TEMPLATES, full_prompt, tiny_model_folder, word_tokenizer

from sal_core.backends import GenerationRequest
from sal_core.backends.tokens import adds_bos, prompt_token_ids
from sal_core.backends.vllm_backend import engine_inputs, map_outputs, plan_call
from sal_core.errors import ModelError

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm

from vllm.outputs import CompletionOutput, RequestOutput  # noqa: E402


@pytest.fixture(scope="module")
def folders(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model folders with a BOS-adding tokenizer (template with and without BOS) and SmolLM2's."""
    found = {"smollm2": tiny_model_path}
    for name in TEMPLATES:
        found[name] = tiny_model_folder(word_tokenizer(name), tmp_path_factory.mktemp(name))
    return found


def renderer_for(folder: Path) -> tuple[Any, Any]:
    """vLLM's completion renderer for a model folder (config and tokenizer only, no weights, no GPU)."""
    from vllm.config import DeviceConfig, ModelConfig, VllmConfig
    from vllm.renderers.registry import renderer_from_config

    model_config = ModelConfig(model=str(folder))
    return model_config, renderer_from_config(VllmConfig(model_config=model_config, device_config=DeviceConfig("cpu")))


def rendered_ids(folder: Path, prompts: list[Any]) -> list[list[int]]:
    """The prompt ids vLLM's engine would receive, through the same steps as `LLM.generate`."""
    from vllm.renderers.inputs.preprocess import parse_model_prompt

    model_config, renderer = renderer_for(folder)
    parsed = [parse_model_prompt(model_config, p) for p in prompts]
    return [item["prompt_token_ids"] for item in renderer.render_cmpl(parsed, renderer.default_cmpl_tok_params)]


@pytest.mark.parametrize("name", ["renders-bos", "no-bos", "smollm2"])
def test_vllm_receives_exactly_the_ids_the_transformers_engine_gets(folders, name: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folders[name])
    text = full_prompt(tokenizer)
    call = plan_call(tokenizer, [GenerationRequest(text, 0.8)], 64 if name != "smollm2" else 4096)
    prompts, _ = engine_inputs(vllm, call)
    [as_tokens, as_text] = rendered_ids(folders[name], [prompts[0], text])
    assert as_tokens == prompt_token_ids(tokenizer, text)
    bos = tokenizer.bos_token_id
    if adds_bos(tokenizer):
        assert as_tokens[0] == bos and as_tokens.count(bos) == 1
        # the text path the adapter used before: one BOS from the template, one from vLLM
        renders_bos = name == "renders-bos"
        assert as_text[: 2 if renders_bos else 1] == [bos] * (2 if renders_bos else 1)
    else:
        assert as_tokens == as_text  # nothing to fix for tokenizers that add no BOS


def test_sampling_params_carry_every_setting() -> None:
    tokenizer = word_tokenizer("no-bos")
    requests = [
        GenerationRequest("What is 2", 0.6, top_p=0.9, max_tokens=50, stop=("\n\n",), seed=11),
        GenerationRequest("What", 0.0, max_tokens=3),
    ]
    prompts, params = engine_inputs(vllm, plan_call(tokenizer, requests, max_model_len=20))
    assert [p["prompt_token_ids"] for p in prompts] == [[0, 8, 9, 10], [0, 8]]
    sampled, greedy = params
    assert isinstance(sampled, vllm.SamplingParams)
    assert (sampled.n, sampled.temperature, sampled.top_p, sampled.seed) == (1, 0.6, 0.9, 11)
    assert sampled.max_tokens == 20 - 4  # clipped to the window left after <s> What is 2
    assert sampled.stop == ["\n\n"] and sampled.include_stop_str_in_output
    assert greedy.temperature == 0.0 and greedy.max_tokens == 3 and greedy.stop == [] and greedy.seed is None


def completion(text: str, tokens: int, finish: str | None, stop_reason: int | str | None) -> CompletionOutput:
    return CompletionOutput(
        index=0,
        text=text,
        token_ids=list(range(tokens)),
        cumulative_logprob=None,
        logprobs=None,
        finish_reason=finish,
        stop_reason=stop_reason,
    )


def request_output(request_id: int, out: CompletionOutput) -> RequestOutput:
    return RequestOutput(
        request_id=str(request_id),
        prompt=None,
        prompt_token_ids=[0, 1],
        prompt_logprobs=None,
        outputs=[out],
        finished=True,
    )


def test_output_mapping_from_real_request_outputs() -> None:
    tokenizer = word_tokenizer("no-bos")
    long = " ".join(["What"] * 30)
    requests = [GenerationRequest(p, 0.7) for p in ("What", long, "What is", "2 + 3", "Step 1")]
    call = plan_call(tokenizer, requests, max_model_len=20)
    assert call.no_room == [1]
    results = [
        request_output(0, completion("## Step 1\n\n", 4, "stop", "\n\n")),  # a stop string
        request_output(2, completion("done", 2, "stop", None)),  # end of sequence
        request_output(3, completion("done", 3, "stop", 2)),  # a stop token id
        request_output(4, completion("and so", 5, "length", None)),
    ]
    outputs = map_outputs(call, results)
    assert [(o.text, o.num_tokens, o.finish_reason) for o in outputs] == [
        ("## Step 1\n\n", 4, "stop"),
        ("", 0, "length"),
        ("done", 2, "eos"),
        ("done", 3, "eos"),
        ("and so", 5, "length"),
    ]


def test_aborted_or_missing_results_are_errors() -> None:
    tokenizer = word_tokenizer("no-bos")
    call = plan_call(tokenizer, [GenerationRequest("What", 0.7)], max_model_len=20)
    with pytest.raises(ModelError, match="finish_reason 'abort'"):
        map_outputs(call, [request_output(0, completion("", 0, "abort", None))])
    with pytest.raises(ModelError, match="0 results for 1 prompts"):
        map_outputs(call, [])
