"""`sal serve-prm` as a real server process on 127.0.0.1, driven through `type: server` PRMs: scores equal
in-process scores, concurrent clients share batches, malformed requests get clear 4xx answers, and a
server serving another model fails the job at start. A tiny Qwen2.5-Math-style PRM behind the server's
vLLM-compatible /pooling endpoint drives the `api: vllm-pooling` client the same way."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForTokenClassification

from sal_core.errors import ConfigError, ServerError
from sal_core.prm import load_prm
from sal_core.prm.server import SalServerPRM, VLLMPoolingPRM
from sal_core.serving.app import settings_fingerprint
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.endpoint import build_servers
from sal_core.settings.jobs import PRMSettings

ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
PROBLEMS = ["What is 2+2?", "What is 3*3?", "Name an odd number."]
COMPLETIONS = [
    ["Add.\n\n2+2=4.\n\n$\\boxed{4}$", "It is $\\boxed{5}$.", "", "Two and two.\n\nFour."],
    ["3*3=9\n\nSo $\\boxed{9}$", "Nine.\n\n\n\nDone.", "Three threes.\n\nNine.\n\nYes."],
    ["Seven.", "1", "3\n\n5", "Odd: 9.\n\nDone.", "11"],
]  # 12 completions: more than the server's 8-per-request limit, so the client must split them


def close(a: list, b: list, tol: float = 1e-5) -> bool:
    """Nested score lists of equal shape and values within `tol`."""
    if isinstance(a, float | int):
        return abs(a - b) <= tol
    return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def judge_settings(tiny_model_path: Path) -> PRMSettings:
    return PRMSettings(name="judge", type="rlhflow", path=str(tiny_model_path), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def server(judge_settings: PRMSettings, tmp_path_factory: pytest.TempPathFactory):
    """One `sal serve-prm` for the module: 150 ms batching window, at most 8 completions per request."""
    folder = tmp_path_factory.mktemp("prm-server")
    args = ["--prm", json.dumps(asdict(judge_settings)), "--batch-window-ms", "150", "--max-request-items", "8"]
    process, record = start_server("serve-prm", args, folder / "service.json", folder / "server.log", env=ENV)
    yield {"record": record, "service_file": folder / "service.json", "url": record["url"]}
    stop_server(process)
    assert not (folder / "service.json").exists(), "the server removes its service file when stopped"


@pytest.fixture(scope="module")
def local(judge_settings: PRMSettings):
    return load_prm(judge_settings)


def client(server: dict, **overrides) -> SalServerPRM:
    settings = {"name": "judge", "type": "server", "served_model": "judge", **overrides}
    prm = load_prm(
        PRMSettings.from_dict(settings), build_servers({"judge": {"service_file": str(server["service_file"])}})
    )
    assert isinstance(prm, SalServerPRM)
    return prm


def test_scores_through_the_server_equal_in_process_scores(server, local) -> None:
    remote = client(server).score(PROBLEMS, COMPLETIONS)
    assert close(remote, local.score(PROBLEMS, COMPLETIONS))
    assert remote[0][2] == [] and [len(s) for s in remote[0]] == [3, 1, 0, 2]
    # the tokens the served PRM read come back with the scores (a search's prm_tokens)
    assert (
        client(server).score_with_tokens(PROBLEMS, COMPLETIONS).tokens
        == local.score_with_tokens(PROBLEMS, COMPLETIONS).tokens
    )


def test_a_client_with_another_step_layout_is_refused(server) -> None:
    with pytest.raises(ServerError, match="scores with step_layout 'default', but prm.step_layout is 'sal'"):
        client(server, step_layout="sal")


def test_health_describes_the_served_prm(server, judge_settings: PRMSettings) -> None:
    health = httpx.get(f"{server['url']}/health").json()
    assert health["status"] == "ready"
    model = health["model"]
    assert (model["name"], model["type"], model["path"]) == ("judge", "rlhflow", judge_settings.path)
    assert model["fingerprint"] == settings_fingerprint(judge_settings) == server["record"]["fingerprint"]
    assert [m["id"] for m in httpx.get(f"{server['url']}/v1/models").json()["data"]] == ["judge"]


def test_concurrent_clients_are_batched_together(server, local) -> None:
    before = httpx.get(f"{server['url']}/v1/info").json()["stats"]
    prm, clients = client(server), 6
    start, results = threading.Barrier(clients), [None] * clients

    def job(k: int) -> None:
        start.wait()
        results[k] = prm.score([PROBLEMS[k % 3]], [COMPLETIONS[k % 3][:2]])

    threads = [threading.Thread(target=job, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = httpx.get(f"{server['url']}/v1/info").json()["stats"]
    assert after["requests"] - before["requests"] == clients
    assert after["batches"] - before["batches"] < clients
    for k, got in enumerate(results):
        assert close(got, local.score([PROBLEMS[k % 3]], [COMPLETIONS[k % 3][:2]]))


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"problems": ["p"], "completions": "x"}, 400, "completions"),
        ({"problems": ["p", "q"], "completions": [["a"]]}, 400, "2 problems but 1"),
        ({"problems": ["p"], "completions": [["a"]], "steps": 3}, 400, "steps"),
        ({"model": "other", "problems": ["p"], "completions": [["a"]]}, 404, "'judge'"),
        ({"problems": ["p"], "completions": [["a"] * 9]}, 413, "limit is 8"),
        ("not json", 400, "malformed"),
    ],
)
def test_malformed_requests_get_a_clear_4xx(server, body, status: int, words: str) -> None:
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    answer = httpx.post(f"{server['url']}/v1/score", **kwargs)
    assert answer.status_code == status
    assert words in answer.json()["error"]["message"]


def test_a_server_serving_another_model_fails_at_start(server) -> None:
    with pytest.raises(ServerError, match="serves 'judge', but prm.served_model is 'other'") as err:
        client(server, served_model="other")
    assert server["url"] in str(err.value)


def test_missing_service_file_is_one_clear_error(tmp_path: Path) -> None:
    settings = PRMSettings.from_dict({"name": "j", "type": "server", "served_model": "j"})
    with pytest.raises(ServerError, match="service file .*gone.json does not exist after waiting 0.3 s"):
        load_prm(settings, build_servers({"j": {"service_file": str(tmp_path / "gone.json"), "wait": 0.3}}))


def test_server_settings_are_checked_and_the_location_is_kept_apart(monkeypatch) -> None:
    base = {"name": "j", "type": "server", "served_model": "j"}
    with pytest.raises(ConfigError, match="servers.j.url: give exactly one"):
        build_servers({"j": {"url": "http://a:1", "service_file": "s.json"}})
    with pytest.raises(ConfigError, match="servers.j.url: 'a:1' must start with http"):
        build_servers({"j": {"url": "a:1"}})
    with pytest.raises(ConfigError, match="prm.served_model"):
        PRMSettings.from_dict({"name": "j", "type": "server"})
    with pytest.raises(ConfigError, match="prm.served_model: only for type server"):
        PRMSettings.from_dict({"name": "j", "type": "rlhflow", "path": "x", "served_model": "j"})
    with pytest.raises(ConfigError, match=r"prm.url: unknown key \(allowed: api, batch_size"):
        PRMSettings.from_dict({**base, "url": "http://a:1"})
    with pytest.raises(ConfigError, match="prm.path"):
        PRMSettings.from_dict({**base, "api": "vllm-pooling"})
    with pytest.raises(ConfigError, match="servers.j: missing: PRM 'j' is served"):
        load_prm(PRMSettings.from_dict(base), build_servers({"k": {"url": "http://a:1"}}))
    assert (
        PRMSettings.from_dict(base).fingerprint() != PRMSettings.from_dict({**base, "served_model": "k"}).fingerprint()
    )
    monkeypatch.delenv("SAL_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="servers.j.api_key_env: environment variable SAL_TEST_UNSET_KEY is not set"):
        load_prm(
            PRMSettings.from_dict(base),
            build_servers({"j": {"url": "http://a:1", "api_key_env": "SAL_TEST_UNSET_KEY"}}),
        )


# --- api: vllm-pooling, against the server's vLLM-compatible /pooling on a tiny Qwen2.5-Math-style PRM


@pytest.fixture(scope="module")
def qwen_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-label token classifier with SmolLM2's tokenizer plus the "<extra_0>" step tag."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.add_tokens(["<extra_0>"], special_tokens=True)
    torch.manual_seed(7)
    config = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.3,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
    )
    folder = tmp_path_factory.mktemp("qwen-prm")
    Qwen2ForTokenClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pooling_server(qwen_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """`sal serve-prm` on the Qwen-style PRM, requiring an API key from SAL_TEST_PRM_KEY."""
    folder = tmp_path_factory.mktemp("pooling-server")
    settings = PRMSettings(name="qwen", type="qwen2.5-math", path=str(qwen_path), device="cpu", max_length=64)
    args = ["--prm", json.dumps(asdict(settings)), "--served-model", "Qwen/tiny-PRM"]
    args += ["--api-key-env", "SAL_TEST_PRM_KEY"]
    env = {**ENV, "SAL_TEST_PRM_KEY": "sesame"}
    process, record = start_server("serve-prm", args, folder / "service.json", folder / "server.log", env=env)
    yield {"url": record["url"], "settings": settings}
    stop_server(process)


def test_vllm_pooling_client_equals_in_process_qwen_scores(pooling_server, qwen_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SAL_TEST_PRM_KEY", "sesame")
    remote = load_prm(
        PRMSettings.from_dict(
            {
                "name": "qwen",
                "type": "server",
                "api": "vllm-pooling",
                "path": str(qwen_path),
                "served_model": "Qwen/tiny-PRM",
                "max_length": 64,  # long completions are cut as in-process: later steps repeat the last score
            }
        ),
        build_servers({"qwen": {"url": pooling_server["url"], "api_key_env": "SAL_TEST_PRM_KEY"}}),
    )
    assert isinstance(remote, VLLMPoolingPRM)
    problems, completions = PROBLEMS[:2], [COMPLETIONS[0], [COMPLETIONS[1][2] * 4, "One."]]
    expected = load_prm(pooling_server["settings"]).score_with_tokens(problems, completions)
    got = remote.score_with_tokens(problems, completions)
    assert close(got.scores, expected.scores) and got.tokens == expected.tokens


def test_a_wrong_api_key_is_refused_naming_the_server(pooling_server, qwen_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SAL_TEST_PRM_KEY", "not-the-key-4711")
    settings = {
        "name": "q",
        "type": "server",
        "api": "vllm-pooling",
        "path": str(qwen_path),
        "served_model": "Qwen/tiny-PRM",
    }
    location = {"url": pooling_server["url"], "api_key_env": "SAL_TEST_PRM_KEY"}
    with pytest.raises(ServerError, match="HTTP 401: missing or wrong API key") as err:
        load_prm(PRMSettings.from_dict(settings), build_servers({"q": location}))
    assert pooling_server["url"] in str(err.value) and "4711" not in str(err.value)


def test_a_pooling_server_with_a_shorter_context_than_max_length_is_refused_at_start(qwen_path: Path) -> None:
    """vLLM answers an input longer than its --max-model-len with HTTP 400, where the in-process family
    truncates at max_length: a server taking fewer tokens than the entry's max_length is named at start."""
    from http_faults import broken_server

    card = {"id": "Qwen/tiny-PRM", "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 512}
    routes = {"/health": (200, {}), "/v1/models": (200, {"object": "list", "data": [card]})}
    entry = {"name": "q", "type": "server", "api": "vllm-pooling", "path": str(qwen_path), "served_model": card["id"]}
    with broken_server(routes) as url:
        with pytest.raises(ServerError, match="prms.q.max_length is 4096, more than the 512 tokens the server takes"):
            load_prm(PRMSettings.from_dict(entry), build_servers({"q": {"url": url}}))
        assert isinstance(
            load_prm(PRMSettings.from_dict({**entry, "max_length": 512}), build_servers({"q": {"url": url}})),
            VLLMPoolingPRM,
        )
