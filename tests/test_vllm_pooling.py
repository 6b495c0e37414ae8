"""vLLM's pooling API for PRMs, for real: a tiny random-weight checkpoint of Qwen2.5-Math-PRM's
architecture (`Qwen2ForProcessRewardModel`: Qwen2 with a two-layer token head; the modelling code it
names is shipped in tests/fixtures/qwen2_rm, as the released model ships its own) served by a real
`vllm serve --runner pooling` (vLLM's CPU build here), scored through `type: server, api:
vllm-pooling`, and compared with the in-process `qwen2.5-math` family on the same weights, float32.
Both score whole solutions (Best-of-N scoring, ProcessBench) and partial ones (beam search's steps)
through the same `PRM.score`. Every route of the server but /health answers 401 without the key,
/pooling (vLLM offers no /v1/pooling, and its own key guards /v1 only) among them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from tiny_qwen_prm import tiny_qwen_prm
from vllm_checks import open_without_key, served_routes, unkeyed_answers

from sal_core.cli import main
from sal_core.prm import load_prm
from sal_core.serving.around import server_specs, start_local
from sal_core.serving.launch import wait_for_service
from sal_core.settings.endpoint import build_servers
from sal_core.settings.jobs import PRMSettings

pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm
KEY_ENV = "TEST_VLLM_POOLING_KEY"
PROBLEM = "What is the sum of the first 4 positive odd numbers?"
SOLUTIONS = [
    "## Step 1: List them\nThe numbers are 1, 3, 5 and 7.\n\n## Step 2: Add\n1 + 3 + 5 + 7 = 16.\n\n"
    "Therefore, the final answer is: $\\boxed{16}$.",
    "The sum is 4^2.\n\nSo 16.",
    "## Step 1: Guess\n",  # a partial solution, as beam search scores them
]


@pytest.fixture(scope="module")
def prms(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same weights in process and behind `vllm serve --runner pooling`, started as `sal
    with-servers --serve-vllm qwen` starts it (serving/vllm_prm.py: the tiny vocabulary's step-tag id,
    float32, the CPU build's memory share), with a run key."""
    root = tmp_path_factory.mktemp("qwen-prm")
    folder = tiny_qwen_prm(tiny_model_path, root / "prm")
    entry = {"type": "qwen2.5-math", "path": str(folder), "device": "cpu", "batch_size": 4, "max_length": 1024}
    local = load_prm(PRMSettings(name="qwen", **entry))
    config = {"models": {"tiny": {"path": str(tiny_model_path)}}, "prms": {"qwen": entry}}
    (spec,) = server_specs(config, [], ["qwen"])
    key = "k-" + os.urandom(8).hex()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **spec.env(key)}
    server = start_local(spec, root / "qwen.json", root / "qwen.log", env)
    try:
        wait_for_service(root / "qwen.json", server.ended, "vllm serve", root / "qwen.log", timeout=600)
        os.environ[KEY_ENV] = key
        location = {"qwen": {"service_file": str(root / "qwen.json"), "api_key_env": KEY_ENV}}
        remote_entry = {
            "name": "qwen",
            "type": "server",
            "api": "vllm-pooling",
            "served_model": "qwen",
            "path": str(folder),
            "max_length": 1024,  # the server's --max-model-len: longer inputs are truncated first, as in process
        }
        remote = load_prm(PRMSettings(**remote_entry), build_servers(location))
        entries = {"local": {"name": "local", **entry}, "remote": remote_entry, "servers": location, "root": root}
        yield local, remote, entries
    finally:
        server.stop()


def test_served_step_scores_equal_the_in_process_family(prms) -> None:
    local, remote, _ = prms
    problems = [PROBLEM] * 2
    completions = [SOLUTIONS[:2], SOLUTIONS[1:]]
    want, got = local.score(problems, completions), remote.score(problems, completions)
    assert [[len(s) for s in p] for p in got] == [[len(s) for s in p] for p in want]
    flat_want = [x for p in want for s in p for x in s]
    flat_got = [x for p in got for s in p for x in s]
    assert flat_got == pytest.approx(flat_want, abs=1e-4)
    assert max(flat_want) - min(flat_want) > 1e-3, "random weights should score steps differently"


def test_sal_processbench_through_the_server_equals_in_process(prms, tmp_path: Path) -> None:
    """`sal processbench` on the built-in samples: the served PRM's per-step scores and earliest-error
    predictions equal the in-process family's."""
    import pandas as pd

    _, _, entries = prms
    argv = ["processbench", "--out", str(tmp_path), "--limit", "3", "--no-plot"]
    argv += ["--prm", json.dumps(entries["local"]), "--prm", json.dumps(entries["remote"])]
    assert main([*argv, "--servers", json.dumps(entries["servers"])]) == 0
    local = pd.read_parquet(tmp_path / "local.samples.parquet")
    remote = pd.read_parquet(tmp_path / "qwen.samples.parquet")
    assert len(local) == 12 and list(local["prediction"]) == list(remote["prediction"])
    for want, got in zip(local["scores"], remote["scores"], strict=True):
        assert list(got) == pytest.approx(list(want), abs=1e-4)


def test_every_route_but_health_needs_the_key(prms) -> None:
    _, _, entries = prms
    root = entries["root"]
    url = json.loads((root / "qwen.json").read_text())["url"]
    routes = served_routes(root / "qwen.log")
    assert {"/health", "/pooling", "/invocations", "/tokenize", "/metrics"} <= {route["path"] for route in routes}
    answers = unkeyed_answers(url, routes)
    assert open_without_key(answers) == {}, answers
    assert answers["POST /pooling"] == 401 and answers["GET /health"] == 200
