"""vLLM engines that tests start one at a time (never beside another: a GPU holds one engine at vLLM's
default memory share; tests/test_vllm_engine.py's module engine is gone before these run): a `sal
generate` job killed by SIGKILL during the engine's start-up, and one killed mid-search, leave no
`VLLM::EngineCore` or `VLLM::Worker` process behind (backends/reaper.py, watching from before
`vllm.LLM()`); a Llama-3-style template gets one BOS; a model vLLM cannot load fails in one line."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from tiny_tokenizers import full_prompt, tiny_model_folder, word_tokenizer
from vllm_checks import PROBLEMS, engine_process, engine_runs, generate_job, kill_once_engine_starts, left_running

from sal_core.backends import GenerationRequest
from sal_core.backends.vllm_backend import VLLMBackend, engine_inputs, plan_call
from sal_core.backends.vllm_engine import NO_TRACKING
from sal_core.settings.jobs import ModelSettings

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm
os.environ.update(NO_TRACKING)

needs_engine = pytest.mark.skipif(not engine_runs(), reason="vLLM finds neither its CPU build nor a CUDA GPU")


@needs_engine
def test_job_killed_during_engine_start_leaves_no_engine_process(tiny_model_path: Path, tmp_path: Path) -> None:
    """SIGKILL once the job's EngineCore exists and before `vllm.LLM()` has returned: the reaper,
    started before the engine, stops it (and its workers) all the same."""
    job, out = generate_job(PROBLEMS, tiny_model_path, tmp_path)
    seen, engines, output = kill_once_engine_starts(job)
    assert job.returncode == -signal.SIGKILL, f"the job ended by itself first:\n{output[-2000:]}"
    assert engines, f"no engine process appeared:\n{output[-2000:]}"
    assert "loaded tiny" not in output, "the engine had finished starting: not a kill during start-up"
    assert left_running(seen) == []
    assert not out.exists()


@needs_engine
def test_killed_job_leaves_no_engine_process(tiny_model_path: Path, tmp_path: Path) -> None:
    """`sal generate` with backend vllm killed (SIGKILL) mid-search: no engine process survives it."""
    import psutil

    job, out = generate_job(PROBLEMS, tiny_model_path, tmp_path)
    seen: set[psutil.Process] = set()
    for line in job.stdout:
        if "loaded tiny" in line:
            seen |= set(psutil.Process(job.pid).children(recursive=True))
            engines = {p for p in seen if engine_process(p)}  # named while they run
            job.send_signal(signal.SIGKILL)
            break
    job.wait()
    assert seen and engines, "the job never reached its search"
    assert left_running(seen) == []
    assert not out.exists()


@needs_engine
def test_llama3_style_template_gets_one_bos(tmp_path: Path) -> None:
    """A tokenizer that adds BOS and a template that renders one too (as Llama 3's): one BOS reaches
    the engine, read back from the RequestOutput."""
    tokenizer = word_tokenizer("renders-bos")
    folder = tiny_model_folder(tokenizer, tmp_path / "renders-bos", hidden_size=128)
    engine = VLLMBackend(ModelSettings(name="tiny", path=str(folder), backend="vllm", max_model_len=64))
    try:
        text = full_prompt(engine.tokenizer)
        call = plan_call(engine.tokenizer, [GenerationRequest(text, 0.0, max_tokens=2)], engine.max_model_len)
        [result] = engine.llm.generate(*engine_inputs(vllm, call), use_tqdm=False)
        ids = list(result.prompt_token_ids)
        bos = engine.tokenizer.bos_token_id
        assert ids[0] == bos and ids.count(bos) == 1
    finally:
        engine.close()


@needs_engine
def test_model_vllm_cannot_load_is_one_line(tmp_path: Path) -> None:
    from sal_core.errors import ModelError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model", "architectures": ["Nope"]}))
    with pytest.raises(ModelError, match=r"^model\.path .*: vLLM cannot load it \(.*\)$"):
        VLLMBackend(ModelSettings(name="broken", path=str(tmp_path), backend="vllm"))
