"""The arguments vLLM's engine is built with (backends.vllm_engine), and what a job without vLLM
says: plain functions, no vLLM needed (the engine itself: tests/test_vllm_engine.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from sal_core.backends import load_backend
from sal_core.backends.vllm_engine import CPU_BATCHED_TOKENS, CPU_SHARE, engine_kwargs
from sal_core.errors import ConfigError, ModelError
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config
from sal_core.settings.jobs import ModelSettings

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def model(folder: Path, **kw) -> ModelSettings:
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    return ModelSettings(name="m", path=str(folder), backend="vllm", **kw)


def test_cpu_defaults(tmp_path: Path) -> None:
    kwargs = engine_kwargs(model(tmp_path, max_model_len=100_000), prm_in_process=True, cpu=True)
    assert kwargs["max_model_len"] == 8192  # capped at the model's positions, as transformers caps it
    assert kwargs["dtype"] == "float32" and kwargs["enforce_eager"] is True
    assert kwargs["gpu_memory_utilization"] == CPU_SHARE  # not the GPU's 0.5 beside a PRM
    assert kwargs["enable_chunked_prefill"] is False
    assert kwargs["max_num_batched_tokens"] == max(8192, CPU_BATCHED_TOKENS)
    assert kwargs["tensor_parallel_size"] == 1


def test_gpu_keeps_the_gpu_rules(tmp_path: Path) -> None:
    kwargs = engine_kwargs(model(tmp_path, dtype="bfloat16"), prm_in_process=True, cpu=False)
    # one GPU unless the entry asks for more, however many the machine has (issue 25, item 3)
    assert kwargs["gpu_memory_utilization"] == 0.5 and kwargs["tensor_parallel_size"] == 1
    assert kwargs["enforce_eager"] is False and "enable_chunked_prefill" not in kwargs
    assert kwargs["dtype"] == "bfloat16" and kwargs["max_model_len"] == 4096
    split = engine_kwargs(model(tmp_path, tensor_parallel_size=2), prm_in_process=False, cpu=False)
    assert split["tensor_parallel_size"] == 2


def test_configured_values_win(tmp_path: Path) -> None:
    kwargs = engine_kwargs(model(tmp_path, gpu_memory_utilization=0.05, enforce_eager=False), False, cpu=True)
    assert kwargs["gpu_memory_utilization"] == 0.05 and kwargs["enforce_eager"] is False


def test_cpu_share_larger_than_the_free_memory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model\.gpu_memory_utilization: 1 of this machine's .* set it lower"):
        engine_kwargs(model(tmp_path, gpu_memory_utilization=1.0), prm_in_process=False, cpu=True)


def test_enforce_eager_stays_out_of_a_jobs_settings_at_its_default(tmp_path: Path) -> None:
    assert "enforce_eager" not in json.loads(to_json(model(tmp_path)))
    assert json.loads(to_json(model(tmp_path, enforce_eager=True)))["enforce_eager"] is True


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_names_the_environment_to_build(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model\.backend vllm: vLLM is not installed .*make vllm-env"):
        load_backend(model(tmp_path))


def test_demo_vllm_config_layers_over_the_default() -> None:
    """config/overlays/vllm.yaml changes the dataset's name and the policy's engine, nothing else."""
    overlay = yaml.safe_load((REPO / "config" / "overlays" / "vllm.yaml").read_text())
    assert overlay == {"dataset": {"name": "easy-math-vllm"}, "models": {"smollm2-135m": {"backend": "vllm"}}}
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert "smollm2-135m" in default["models"] and default["dataset"]["name"] != "easy-math-vllm"
    default["dataset"].update(overlay["dataset"])
    default["models"]["smollm2-135m"].update(overlay["models"]["smollm2-135m"])
    grid = check_config(default, SCHEMA)
    assert {run.job.model.backend for run in grid.runs} == {"vllm"}
