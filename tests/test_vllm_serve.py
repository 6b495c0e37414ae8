"""A real `vllm serve` (vLLM's CPU build here) started as `sal with-servers` starts it, and the
`backend: openai` client against it: the server samples with what each request sends, never with the
model's generation_config.json defaults, and its finish reasons map as the in-process engines' do.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from sal_core.backends import GenerationRequest, load_backend
from sal_core.backends.transformers_backend import TransformersBackend
from sal_core.search.prompts import build_prompt
from sal_core.serving.around import server_specs, start_local
from sal_core.serving.launch import wait_for_service
from sal_core.settings.endpoint import build_servers
from sal_core.settings.jobs import DEFAULT_SYSTEM_PROMPT, ModelSettings

pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm
KEY_ENV = "TEST_VLLM_SERVE_KEY"


@pytest.fixture(scope="module")
def served(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """SmolLM2 behind `vllm serve`, its generation_config.json asking for greedy-like sampling
    (top_k 1) and a strong repetition penalty: defaults the server must not apply."""
    root = tmp_path_factory.mktemp("vllm-serve")
    folder = shutil.copytree(smollm2_path, root / "smollm2")
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "top_k": 1, "repetition_penalty": 2.0}))
    entry = {"path": str(folder), "backend": "vllm", "max_model_len": 1024}
    (spec,) = server_specs({"models": {"smol": entry}}, ["smol"])
    key = "k-" + os.urandom(8).hex()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **spec.env(key)}
    server = start_local(spec, root / "smol.json", root / "smol.log", env)
    try:
        wait_for_service(root / "smol.json", server.ended, "vllm serve", root / "smol.log", timeout=600)
        os.environ[KEY_ENV] = key
        settings = ModelSettings(
            name="smol", path=str(folder), backend="openai", served_model="smol", max_model_len=1024
        )
        location = {"smol": {"service_file": str(root / "smol.json"), "api_key_env": KEY_ENV}}
        yield load_backend(settings, build_servers(location)), folder
    finally:
        server.stop()


def test_seeds_give_distinct_samples_whatever_the_models_defaults(served) -> None:
    """With the model's top_k 1 applied every seed would give the same text."""
    backend, _ = served
    prompt = build_prompt(backend.tokenizer, "Write a short story about a cat.", DEFAULT_SYSTEM_PROMPT, None)
    outputs = backend.generate([GenerationRequest(prompt, 1.0, max_tokens=24, seed=s) for s in range(6)])
    assert len({o.text for o in outputs}) == 6


def test_finish_reasons_and_greedy_text_match_the_in_process_engine(served) -> None:
    backend, folder = served
    local = TransformersBackend(ModelSettings(name="smol", path=str(folder), max_model_len=1024))
    problems = ("What is 2 + 3?", "Simplify 6/8.")
    prompts = [build_prompt(local.tokenizer, p, DEFAULT_SYSTEM_PROMPT, None) for p in problems]
    requests = [GenerationRequest(p, 0.0, max_tokens=64, stop=("\n\n",)) for p in prompts]
    requests += [GenerationRequest(prompts[0], 0.0, max_tokens=3), GenerationRequest(prompts[0], 0.0, max_tokens=400)]
    got, expected = backend.generate(requests), local.generate(requests)
    assert "stop" in {o.finish_reason for o in got[:2]}
    assert [o.finish_reason for o in got[2:]] == ["length", "eos"]
    assert got == expected
