"""`sal serve` and `sal serve-prm` fuzzed from their own OpenAPI schemas (schemathesis strategies driven
by hypothesis): valid and invalid requests to every operation, a bounded number, against real server
processes on a tiny model (max_model_len 64). No answer is a 5xx, none hangs, every refusal is an
OpenAI-style error body (a malformed request names its field), and afterwards the servers give a valid
request the same answer as before. One request that breaks a model call does not fail the others of
its micro-batch. Run in CI (.ci/run); FUZZ_EXAMPLES scales it (default 400 per operation and mode:
about 2500 requests, 40-110 s on 2 shared cores)."""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest

from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.jobs import ModelSettings, PRMSettings

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

KEY = "sk-fuzz-3c1f"
HEADERS = {"Authorization": f"Bearer {KEY}"}
ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "SAL_TEST_FUZZ_KEY": KEY}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
LIMITS = ["--api-key-env", "SAL_TEST_FUZZ_KEY", "--max-request-items", "8", "--batch-window-ms", "5"]
SCORE = {"problems": ["1+1?", "2+2?"], "completions": [["2.\n\nYes.", "3"], ["4"]]}
SERVED = {"/v1/completions": "tiny", "/v1/score": "judge", "/pooling": "judge"}
#: the completion fields sal serve runs with (others that change results are refused: a class of its own)
RUNS = {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "include_stop_str_in_output"}
VOCAB = 0  # the tiny model's vocabulary size, set by the fixture
#: answers by (method, path, status), over the whole module
STATUSES: Counter = Counter()
COMPLETION = {"model": "tiny", "prompt": "1+1=", "max_tokens": 8, "temperature": 0.7, "seed": 3}


@pytest.fixture(scope="module")
def servers(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    global VOCAB
    from transformers import AutoTokenizer

    VOCAB = len(AutoTokenizer.from_pretrained(tiny_model_path))
    folder = tmp_path_factory.mktemp("fuzz")
    model = ModelSettings(name="tiny", path=str(tiny_model_path), device="cpu", max_model_len=64)
    prm = PRMSettings(name="judge", type="rlhflow", path=str(tiny_model_path), device="cpu", max_length=64)
    started = {
        "serve": start_server("serve", ["--model", json.dumps(asdict(model)), *LIMITS], *files(folder, "m"), env=ENV),
        "serve-prm": start_server(
            "serve-prm", ["--prm", json.dumps(asdict(prm)), *LIMITS], *files(folder, "p"), env=ENV
        ),
    }
    yield {name: record["url"] for name, (_, record) in started.items()}
    for process, _ in started.values():
        assert process.poll() is None, "a server died during the fuzzing"
        stop_server(process)


def files(folder: Path, name: str) -> tuple[Path, Path]:
    return folder / f"{name}.json", folder / f"{name}.log"


def check_answer(response, where: str) -> None:
    """No 5xx; every refusal an OpenAI error body whose code is its status; a malformed request named."""
    status = response.status_code
    assert status < 500, f"{where}: HTTP {status}: {response.text[:300]}"
    if status >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["code"] == status and error["type"], (where, error)
        if error["message"].startswith("malformed request"):
            assert re.match(r"malformed request: [\w.\[\]-]+: ", error["message"]), (where, error)


def fuzz(url: str, examples: int) -> None:
    """Every operation of the server's schema, valid and invalid requests (counted in STATUSES)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=HEADERS)
    for result in schema.get_all_operations():
        operation = result.ok()
        many = examples if operation.method.upper() == "POST" else max(examples // 20, 5)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                drive(operation, mode, url, many)
            except hypothesis.errors.Unsatisfiable:  # no invalid request exists (a GET without parameters)
                assert mode == schemathesis.GenerationMode.NEGATIVE


def in_vocab(prompt):
    """Token ids folded into the tiny model's vocabulary (text and other shapes as they are)."""
    if isinstance(prompt, list) and prompt and all(isinstance(i, int) for i in prompt):
        return [abs(i) % VOCAB for i in prompt]
    if isinstance(prompt, list):
        return [in_vocab(p) if isinstance(p, list) else p for p in prompt]
    return prompt


def repaired(path: str, body: dict, valid: bool) -> dict:
    """Half the requests are steered past the checks that refuse most random ones, into the model: the
    served model's name; for valid ones also token ids in the vocabulary, only the sampling fields
    `sal serve` runs (the others are refused as a class, tested apart), one completion list per problem."""
    body = dict(body)
    if isinstance(body.get("model"), str):
        body["model"] = SERVED[path]
    if not valid:
        return body
    if path == "/v1/completions":
        body = {k: v for k, v in body.items() if k in RUNS}
        body["prompt"] = in_vocab(body.get("prompt"))
    if path == "/pooling":
        body["input"] = in_vocab(body.get("input"))
    if path == "/v1/score" and isinstance(body.get("problems"), list) and isinstance(body.get("completions"), list):
        n = min(len(body["problems"]), len(body["completions"]))
        body["problems"], body["completions"] = body["problems"][:n], body["completions"][:n]
    return body


def drive(operation, mode, url: str, many: int) -> None:
    """Up to `many` requests to one operation in one generation mode, each answer checked."""

    @hypothesis.settings(
        max_examples=many,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode), served=hypothesis.strategies.booleans())
    def run(case, served: bool) -> None:
        if served and isinstance(case.body, dict):
            case.body = repaired(operation.path, case.body, mode == schemathesis.GenerationMode.POSITIVE)
        response = case.call(base_url=url, headers=HEADERS, timeout=60)
        STATUSES[(operation.method.upper(), operation.path, response.status_code)] += 1
        check_answer(response, f"{case.method} {case.path} {mode.value} {str(case.body)[:300]}")

    run()


@pytest.mark.slow
def test_fuzzed_servers_answer_every_request_and_give_the_same_answers_after(servers: dict) -> None:
    before_scores = httpx.post(f"{servers['serve-prm']}/v1/score", json=SCORE, headers=HEADERS).json()
    before_text = httpx.post(f"{servers['serve']}/v1/completions", json=COMPLETION, headers=HEADERS).json()
    fuzz(servers["serve-prm"], EXAMPLES)
    fuzz(servers["serve"], EXAMPLES)
    print(sorted(STATUSES.items()))
    for path in ("/v1/completions", "/v1/score"):  # the model really ran on fuzzed requests, and refused others
        assert STATUSES[("POST", path, 200)] >= EXAMPLES // 10 and STATUSES[("POST", path, 400)] >= EXAMPLES // 10
    assert sum(STATUSES.values()) >= 5 * EXAMPLES
    after_scores = httpx.post(f"{servers['serve-prm']}/v1/score", json=SCORE, headers=HEADERS).json()
    after_text = httpx.post(f"{servers['serve']}/v1/completions", json=COMPLETION, headers=HEADERS).json()
    assert after_scores["scores"] == before_scores["scores"]
    assert [c["text"] for c in after_text["choices"]] == [c["text"] for c in before_text["choices"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": 2**64}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"temperature": 1e308 * 10}, "temperature"),
        ({"top_p": float("nan")}, "top_p"),
    ],
)
def test_a_request_that_would_break_the_model_call_is_refused_alone(servers: dict, change: dict, field: str) -> None:
    """The bad request gets a 400 naming its field; the good ones merged into the same micro-batch
    (sent at the same moment) get their answers."""
    url = f"{servers['serve']}/v1/completions"
    bad = json.dumps({**COMPLETION, **change}).replace("NaN", "NaN").encode()
    results: dict[str, httpx.Response] = {}

    def send(name: str, content: bytes) -> None:
        results[name] = httpx.post(
            url, content=content, headers={**HEADERS, "content-type": "application/json"}, timeout=120
        )

    threads = [threading.Thread(target=send, args=("bad", bad))]
    threads += [threading.Thread(target=send, args=(f"good{i}", json.dumps(COMPLETION).encode())) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["bad"].status_code == 400, results["bad"].text
    assert results["bad"].json()["error"]["message"].startswith(f"malformed request: {field}: ")
    assert all(results[f"good{i}"].status_code == 200 for i in range(3)), [r.text for r in results.values()]


def test_a_failing_model_call_fails_only_the_request_that_broke_it() -> None:
    """A class no validation knows yet: the merged call fails, each request runs again alone, and only
    the one that breaks the model call gets the error."""
    import asyncio

    from sal_core.serving.batching import MicroBatcher

    calls: list[list[str]] = []

    def process(payloads: list[str]) -> list[str]:
        calls.append(payloads)
        if "bad" in payloads:
            raise ValueError("Overflow when unpacking long long")
        return [p.upper() for p in payloads]

    async def main() -> list:
        batcher = MicroBatcher(process, max_batch=16, window_s=0.2, max_queue=16)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(p, 1) for p in ("a", "bad", "c")), return_exceptions=True)
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results[0] == "A" and results[2] == "C" and isinstance(results[1], ValueError)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
