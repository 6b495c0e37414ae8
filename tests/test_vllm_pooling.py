"""vLLM's pooling API for PRMs, for real: a tiny random-weight checkpoint of Qwen2.5-Math-PRM's
architecture (`Qwen2ForProcessRewardModel`: Qwen2 with a two-layer token head; the modelling code it
names is shipped in tests/fixtures/qwen2_rm, as the released model ships its own) served by a real
`vllm serve --runner pooling` (vLLM's CPU build here), scored through `type: server, api:
vllm-pooling`, and compared with the in-process `qwen2.5-math` family on the same weights, float32.
Both score whole solutions (Best-of-N scoring, ProcessBench) and partial ones (beam search's steps)
through the same `PRM.score`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sal_core.prm import load_prm
from sal_core.serving.announce import wait_for_health
from sal_core.serving.launch import stop_server
from sal_core.settings.endpoint import build_servers
from sal_core.settings.jobs import PRMSettings

pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm
FIXTURE = Path(__file__).parent / "fixtures" / "qwen2_rm"
PROBLEM = "What is the sum of the first 4 positive odd numbers?"
SOLUTIONS = [
    "## Step 1: List them\nThe numbers are 1, 3, 5 and 7.\n\n## Step 2: Add\n1 + 3 + 5 + 7 = 16.\n\n"
    "Therefore, the final answer is: $\\boxed{16}$.",
    "The sum is 4^2.\n\nSo 16.",
    "## Step 1: Guess\n",  # a partial solution, as beam search scores them
]


def tiny_qwen_prm(tokenizer_folder: Path, folder: Path) -> Path:
    """A random Qwen2ForProcessRewardModel (heads of 64 dimensions: vLLM's CPU attention needs 32+)
    with SmolLM2's tokenizer and chat template plus the "<extra_0>" step tag."""
    from transformers import AutoTokenizer, Qwen2Config

    sys.path.insert(0, str(FIXTURE))
    try:
        from modeling_qwen2_rm import Qwen2ForProcessRewardModel
    finally:
        sys.path.remove(str(FIXTURE))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    tokenizer.add_tokens(["<extra_0>"], special_tokens=True)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, initializer_range=0.3,
        pad_token_id=tokenizer.pad_token_id, architectures=["Qwen2ForProcessRewardModel"],
        auto_map={"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"},
    )  # fmt: skip
    torch.manual_seed(3)
    Qwen2ForProcessRewardModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(FIXTURE / "modeling_qwen2_rm.py", folder)
    config_file = folder / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "model_type": "qwen2"}))
    return folder


@pytest.fixture(scope="module")
def prms(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same weights in process and behind `vllm serve --runner pooling` on a free local port."""
    root = tmp_path_factory.mktemp("qwen-prm")
    folder = tiny_qwen_prm(tiny_model_path, root / "prm")
    local = load_prm(PRMSettings(name="qwen", type="qwen2.5-math", path=str(folder), device="cpu", batch_size=4))
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [str(Path(sys.executable).parent / "vllm"), "serve", str(folder), "--runner", "pooling"]
    argv += ["--served-model-name", "qwen", "--trust-remote-code", "--dtype", "float32", "--max-model-len", "1024"]
    argv += ["--enforce-eager", "--gpu-memory-utilization", "0.1", "--host", "127.0.0.1", "--port", str(port)]
    # vLLM takes the released model's "<extra_0>" id (151651) unless told the tiny vocabulary's
    argv += ["--pooler-config", json.dumps({"step_tag_id": local.tokenizer.convert_tokens_to_ids("<extra_0>")})]
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    log = (root / "server.log").open("w")
    server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_health(server, f"http://127.0.0.1:{port}", timeout=600)
        settings = PRMSettings(name="qwen", type="server", api="vllm-pooling", served_model="qwen", path=str(folder))
        remote = load_prm(settings, build_servers({"qwen": {"url": f"http://127.0.0.1:{port}"}}))
        yield local, remote
    finally:
        stop_server(server, timeout=30)
        log.close()


def test_served_step_scores_equal_the_in_process_family(prms) -> None:
    local, remote = prms
    problems = [PROBLEM] * 2
    completions = [SOLUTIONS[:2], SOLUTIONS[1:]]
    want, got = local.score(problems, completions), remote.score(problems, completions)
    assert [[len(s) for s in p] for p in got] == [[len(s) for s in p] for p in want]
    flat_want = [x for p in want for s in p for x in s]
    flat_got = [x for p in got for s in p for x in s]
    assert flat_got == pytest.approx(flat_want, abs=1e-4)
    assert max(flat_want) - min(flat_want) > 1e-3, "random weights should score steps differently"
