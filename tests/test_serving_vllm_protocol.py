"""The server clients against vLLM's own protocol classes (runs only where vLLM is installed: `make
test-vllm`, in the environment of `make vllm-env`): the requests we send validate as vLLM's request
models, and answers vLLM builds are read the way we mean them."""

from __future__ import annotations

import pytest

vllm_pooling = pytest.importorskip("vllm.entrypoints.pooling.pooling.protocol")
vllm_completion = pytest.importorskip("vllm.entrypoints.openai.completion.protocol")
vllm_engine = pytest.importorskip("vllm.entrypoints.serve.engine.protocol")
pytestmark = pytest.mark.vllm

from openai.types import Completion, Model  # noqa: E402

from sal_core.backends.base import GenerationRequest  # noqa: E402
from sal_core.backends.openai_backend import completion_arguments, finish_reason  # noqa: E402
from sal_core.prm.hf import Encoded  # noqa: E402
from sal_core.prm.server import pooled_step_probs, pooling_request  # noqa: E402

TAG = 151651  # <extra_0>, vLLM's default step_tag_id for Qwen2ForProcessRewardModel


def test_pooling_request_and_step_rows_match_vllm() -> None:
    encoded = [Encoded([1, 2, TAG, 5, TAG], [2, 4]), Encoded([3, TAG], [1])]
    request = vllm_pooling.PoolingCompletionRequest.model_validate(pooling_request("Qwen/PRM", encoded))
    assert request.input == [[1, 2, TAG, 5, TAG], [3, TAG]] and request.task == "token_classify"
    answer = vllm_pooling.PoolingResponse(
        id="p",
        created=0,
        model="Qwen/PRM",
        data=[  # out of order on purpose: results are matched by index
            vllm_pooling.PoolingResponseData(index=1, data=[[0.9, 0.1]]),
            vllm_pooling.PoolingResponseData(index=0, data=[[0.3, 0.7], [0.6, 0.4]]),
        ],
        usage=vllm_engine.UsageInfo(prompt_tokens=7, total_tokens=7),
    ).model_dump(mode="json")
    assert pooled_step_probs(answer, encoded, TAG) == [[0.7, 0.4], [0.1]]


def test_completion_request_and_choices_match_vllm() -> None:
    request = GenerationRequest("x", temperature=0.8, top_p=0.9, max_tokens=9, stop=("\n\n",), seed=3)
    kwargs = completion_arguments("policy", request, [128000, 9906], 7)
    body = {k: v for k, v in kwargs.items() if k != "extra_body"} | kwargs["extra_body"]
    parsed = vllm_completion.CompletionRequest.model_validate(body)
    assert (parsed.prompt, parsed.max_tokens, parsed.seed, parsed.stop) == ([128000, 9906], 7, 3, ["\n\n"])
    assert parsed.include_stop_str_in_output
    choices = [
        vllm_completion.CompletionResponseChoice(index=0, text="a\n\n", finish_reason="stop", stop_reason="\n\n"),
        vllm_completion.CompletionResponseChoice(index=1, text="a", finish_reason="stop", stop_reason=None),
        vllm_completion.CompletionResponseChoice(index=2, text="a", finish_reason="stop", stop_reason=128009),
        vllm_completion.CompletionResponseChoice(index=3, text="abc", finish_reason="length"),
    ]
    usage = vllm_engine.UsageInfo(prompt_tokens=2, completion_tokens=3, total_tokens=5)
    answer = vllm_completion.CompletionResponse(model="policy", choices=choices, usage=usage).model_dump(mode="json")
    got = Completion.model_validate(answer)
    reasons = [
        finish_reason(
            c.finish_reason, c.model_extra.get("stop_reason"), c.text, ["\n\n"], "stop_reason" in c.model_extra
        )
        for c in got.choices
    ]
    assert reasons == ["stop", "eos", "eos", "length"] and got.usage.completion_tokens == 3


def test_model_card_carries_the_context_length() -> None:
    card = vllm_engine.ModelCard(id="policy", root="/models/p", max_model_len=4096).model_dump(mode="json")
    assert Model.model_validate(card).model_extra["max_model_len"] == 4096
