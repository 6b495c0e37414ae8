"""`sal serve` as a real server process on 127.0.0.1, driven through the official `openai` client and
`backend: openai`: seeded generations equal the in-process transformers backend, text and token
prompts agree, stop strings and usage follow vLLM's completions API, concurrent requests share
batches, and a server serving another model fails the job at start."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import httpx
import openai
import pandas as pd
import pytest

from sal_core.backends import GenerationRequest, load_backend
from sal_core.backends.openai_backend import OpenAIBackend
from sal_core.backends.tokens import prompt_token_ids
from sal_core.backends.transformers_backend import TransformersBackend
from sal_core.errors import ServerError
from sal_core.pipeline.generate import generate_shard
from sal_core.pipeline.prepare_dataset import DatasetSettings, snapshot_problems
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.endpoint import Servers, build_servers
from sal_core.settings.jobs import GenerateJob, ModelSettings
from sal_core.tables import read_table

ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
PROMPT = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model_settings(tiny_model_path: Path) -> ModelSettings:
    return ModelSettings(name="tiny", path=str(tiny_model_path), device="cpu", max_model_len=256, batch_size=8)


@pytest.fixture(scope="module")
def server(model_settings: ModelSettings, tmp_path_factory: pytest.TempPathFactory):
    """One `sal serve` for the module, with a 150 ms batching window."""
    folder = tmp_path_factory.mktemp("gen-server")
    args = ["--model", json.dumps({"name": "tiny", "path": model_settings.path, "device": "cpu", "max_model_len": 256})]
    args += ["--batch-window-ms", "150"]
    process, record = start_server("serve", args, folder / "svc.json", folder / "server.log", env=ENV)
    yield {"url": record["url"], "service_file": folder / "svc.json"}
    stop_server(process)


@pytest.fixture(scope="module")
def local(model_settings: ModelSettings) -> TransformersBackend:
    return TransformersBackend(model_settings)


def remote_settings(model_settings: ModelSettings, **overrides) -> ModelSettings:
    data = {
        "name": "tiny",
        "path": model_settings.path,
        "backend": "openai",
        "served_model": "tiny",
        "max_model_len": 256,
    }
    return ModelSettings.from_dict({**data, **overrides})


def servers(server: dict, **location) -> Servers:
    """Where the module's server is, as the workflow's servers file says it."""
    return build_servers({"tiny": {"service_file": str(server["service_file"]), **location}})


@pytest.fixture(scope="module")
def remote(server, model_settings: ModelSettings) -> OpenAIBackend:
    backend = load_backend(remote_settings(model_settings), servers(server, max_in_flight=8))
    assert isinstance(backend, OpenAIBackend)
    return backend


def requests() -> list[GenerationRequest]:
    """Greedy and seeded sampling, top_p, stop strings, and a prompt with almost no room left."""
    return [
        GenerationRequest(PROMPT, temperature=0.0, max_tokens=10),
        GenerationRequest(PROMPT, temperature=1.0, max_tokens=12, seed=1, stop=(" the", "e")),
        GenerationRequest(PROMPT, temperature=0.7, top_p=0.9, max_tokens=12, seed=2),
        GenerationRequest("Count: 1, 2, 3,", temperature=1.2, max_tokens=8, seed=3, stop=("\n",)),
        GenerationRequest("word " * 250, temperature=0.8, max_tokens=50, seed=4),
        GenerationRequest("", temperature=0.8, max_tokens=4, seed=5),
    ]


def test_seeded_generations_equal_the_in_process_backend(remote, local) -> None:
    got, expected = remote.generate(requests()), local.generate(requests())
    assert got == expected
    assert {o.finish_reason for o in got} >= {"length"}
    assert got[4].num_tokens < 50, "the prompt-length budget holds through the server"


def test_openai_client_text_and_token_prompts_agree(server, local) -> None:
    client = openai.OpenAI(base_url=f"{server['url']}/v1", api_key="unused")
    ids = prompt_token_ids(local.tokenizer, PROMPT)
    common = {"model": "tiny", "max_tokens": 12, "temperature": 1.0, "seed": 1, "stop": [" the", "e"]}
    as_text = client.completions.create(prompt=PROMPT, **common)
    as_ids = client.completions.create(prompt=ids, **common, extra_body={"include_stop_str_in_output": True})
    text, kept = as_text.choices[0], as_ids.choices[0]
    assert as_ids.usage.prompt_tokens == as_text.usage.prompt_tokens == len(ids)
    assert as_ids.usage.completion_tokens == as_text.usage.completion_tokens
    # with this seed a stop string ends the text: kept in the text only when asked for, named in stop_reason
    stop = kept.model_extra["stop_reason"]
    assert kept.finish_reason == text.finish_reason == "stop" and stop in common["stop"]
    assert kept.text == text.text + stop and not text.text.endswith(stop)
    expected = local.generate([GenerationRequest(PROMPT, temperature=1.0, max_tokens=12, seed=1, stop=(" the", "e"))])
    assert kept.text == expected[0].text


def test_concurrent_requests_are_batched_together(server, remote) -> None:
    before = httpx.get(f"{server['url']}/v1/info").json()["stats"]
    batch = [GenerationRequest(PROMPT, temperature=0.9, max_tokens=6, seed=s) for s in range(8)]
    assert len(remote.generate(batch)) == 8
    after = httpx.get(f"{server['url']}/v1/info").json()["stats"]
    assert after["requests"] - before["requests"] == 8
    assert after["batches"] - before["batches"] < 8


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "tiny", "prompt": "x", "n": 2}, 400, "n: not supported"),
        ({"model": "tiny", "prompt": "x", "stream": True}, 400, "stream"),
        ({"model": "other", "prompt": "x"}, 404, "serves 'tiny'"),
        ({"model": "tiny", "prompt": [10**9]}, 400, "token ids must be in"),
        ({"model": "tiny", "prompt": []}, 400, "empty"),
        ({"model": "tiny", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ({"model": "tiny", "prompt": "x", "temperature": "hot"}, 400, "temperature"),
        # sampling fields sal serve does not implement: refused unless neutral, never silently ignored
        ({"model": "tiny", "prompt": "x", "top_k": 1}, 400, "top_k: sal serve samples without it"),
        ({"model": "tiny", "prompt": "x", "repetition_penalty": 2.0}, 400, "repetition_penalty"),
        ({"model": "tiny", "prompt": "x", "min_p": 0.1}, 400, "min_p"),
        ({"model": "tiny", "prompt": "x", "presence_penalty": 0.5}, 400, "presence_penalty"),
        ({"model": "tiny", "prompt": "x", "frequency_penalty": -1}, 400, "frequency_penalty"),
    ],
)
def test_malformed_requests_get_a_clear_4xx(server, body: dict, status: int, words: str) -> None:
    answer = httpx.post(f"{server['url']}/v1/completions", json=body)
    assert answer.status_code == status
    assert words in answer.json()["error"]["message"]


def test_a_server_serving_another_model_fails_at_backend_start(server, model_settings) -> None:
    with pytest.raises(ServerError, match="serves 'tiny', but model.served_model is 'other'") as err:
        load_backend(remote_settings(model_settings, served_model="other"), servers(server))
    assert server["url"] in str(err.value)


def test_generate_job_through_the_server_equals_in_process(server, model_settings, tmp_path: Path) -> None:
    dataset = DatasetSettings.from_dict(
        {"name": "easy", "source": "builtin", "path": "easy_math", "limit": 2, "shard_size": 2}
    )
    problems = tmp_path / "problems.parquet"
    snapshot_problems(dataset, problems)
    search = {"method": "best_of_n", "n": 3, "temperatures": [0.8], "max_tokens": 16, "seed": 0}
    jobs = {
        "local": GenerateJob.from_dict({"model": asdict(model_settings), "search": search}),
        "served": GenerateJob.from_dict({"model": asdict(remote_settings(model_settings)), "search": search}),
    }
    frames = {}
    for name, job in jobs.items():
        frames[name] = read_table(generate_shard(problems, 0, 2, job, tmp_path / f"{name}.parquet", servers(server)))
    columns = ["problem_id", "completions", "completion_tokens", "finish_reasons"]
    pd.testing.assert_frame_equal(frames["local"][columns], frames["served"][columns])


def test_every_sampling_field_is_sent_at_its_neutral_value() -> None:
    """A server fills a field a request leaves unset from its own defaults (vllm serve: the model's
    generation_config.json); search-and-learn's SamplingParams leave all of these neutral."""
    from sal_core.backends.openai_backend import completion_arguments

    kwargs = completion_arguments("tiny", GenerationRequest("x", 0.8, seed=3), [1, 2], 10)
    assert {k: kwargs[k] for k in ("presence_penalty", "frequency_penalty")} == {
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }
    assert kwargs["extra_body"] == {
        "include_stop_str_in_output": True, "return_token_ids": True, "top_k": 0, "min_p": 0.0,
        "repetition_penalty": 1.0,
    }  # fmt: skip


def test_neutral_values_are_accepted(server) -> None:
    body = {"model": "tiny", "prompt": "x", "max_tokens": 2, "top_k": -1, "min_p": 0, "repetition_penalty": 1}
    assert httpx.post(f"{server['url']}/v1/completions", json=body).status_code == 200
