"""vLLM's share of the GPU depends on the job, and a PRM that cannot fit beside it fails in one line
before it is loaded. The decision and the message are pure functions, tested with given numbers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sal_core import gpu_info
from sal_core.backends.gpu_memory import (
    ALONE,
    BESIDE_PRM,
    GIB,
    check_prm_fits,
    gpu_memory_utilization,
    plan_share,
    prm_fit_error,
    prm_need_for,
    read_config,
    vllm_share_beside_prm,
    weight_bytes,
)
from sal_core.backends.memory_estimate import Architecture, prm_need
from sal_core.errors import ModelError
from sal_core.settings.jobs import GenerateJob, ModelSettings, PRMSettings

PRM = PRMSettings(name="rlhflow-8b", type="rlhflow", path="unused")


def job(method: str, **model) -> GenerateJob:
    data = {
        "model": {"name": "llama-1b", "path": "unused", "backend": "vllm", **model},
        "search": {"method": method, "n": 4},
        "prm": {"name": "rlhflow-8b", "type": "rlhflow", "path": "unused"},
    }
    return GenerateJob.from_dict(data)


@pytest.mark.parametrize(("method", "expected"), [("best_of_n", 0.9), ("beam_search", 0.5), ("dvts", 0.5)])
def test_default_leaves_room_only_when_a_prm_is_loaded_beside_vllm(method: str, expected: float) -> None:
    settings = job(method)
    assert settings.model.gpu_memory_utilization is None
    in_process = method in ("beam_search", "dvts")
    assert gpu_memory_utilization(settings.model, prm_in_process=in_process) == expected


@pytest.mark.parametrize("method", ["best_of_n", "beam_search"])
def test_a_configured_value_always_wins(method: str) -> None:
    model = job(method, gpu_memory_utilization=0.7).model
    assert gpu_memory_utilization(model, prm_in_process=True) == 0.7
    assert gpu_memory_utilization(model, prm_in_process=False) == 0.7


def test_an_8b_prm_does_not_fit_beside_vllm_at_0_9_of_an_80_gb_gpu_but_does_at_0_5() -> None:
    model = job("beam_search").model
    needed = 8_030_000_000 * 2  # Llama-3.1-8B in bfloat16
    gpu = 80 * 10**9
    at = {u: prm_fit_error(int(gpu * (1 - u)), needed, model, PRM, u) for u in (ALONE, BESIDE_PRM)}
    assert at[BESIDE_PRM] is None
    message = at[ALONE]
    assert message is not None and "\n" not in message
    assert "models.llama-1b.gpu_memory_utilization=0.9" in message
    assert "7.5 GiB free, 15.0 GiB needed" in message
    assert message.startswith("prms.rlhflow-8b:")


def test_transformers_backend_message_names_the_prm_device_not_vllm() -> None:
    model = ModelSettings(name="small", path="unused", backend="transformers")
    message = prm_fit_error(1 * GIB, 2 * GIB, model, PRM, 0.9)
    assert message is not None and "gpu_memory_utilization" not in message and "prms.rlhflow-8b.device" in message
    assert prm_fit_error(2 * GIB, 2 * GIB, model, PRM, 0.9) is None


def test_weight_size_comes_from_safetensors_headers(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(10, 100), "b": torch.zeros(50)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"c": torch.zeros(3, dtype=torch.int64)}, tmp_path / "model-00002-of-00002.safetensors")
    floats, ints = 10 * 100 + 50, 3
    assert weight_bytes(tmp_path, None) == floats * 4 + ints * 8  # as stored
    assert weight_bytes(tmp_path, 2) == floats * 2 + ints * 8  # loaded in bfloat16: integers keep their size
    assert weight_bytes(tmp_path / "missing", 2) is None
    assert weight_bytes("RLHFlow/Llama3.1-8B-PRM-Deepseek-Data", 2) is None  # a hub name: no check


def test_no_check_for_a_prm_on_the_cpu(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(1000)}, tmp_path / "model.safetensors")
    prm = PRMSettings(name="p", type="rlhflow", path=str(tmp_path), device="cpu")
    check_prm_fits(job("dvts").model, prm, BESIDE_PRM)  # nothing to check: no error


def _fake_hub_cache(root: Path, repo_id: str, checkpoint: Path) -> Path:
    """`checkpoint`'s files laid out as huggingface_hub's cache holds a downloaded repo (refs/main -> snapshot)."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    return repo / "snapshots" / commit


def test_a_hub_id_is_measured_in_the_local_hub_cache(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Published PRM paths are Hub ids: the check reads the cached snapshot, and says when there is none."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = _fake_hub_cache(tmp_path / "hub", "someorg/tiny-prm", tiny_model_path)
    assert (snapshot / "config.json").is_file()
    expected = weight_bytes(tiny_model_path, 2)
    assert expected and weight_bytes("someorg/tiny-prm", 2) == expected
    caplog.set_level("WARNING", logger="sal_core.backends.gpu_memory")
    assert weight_bytes("someorg/not-downloaded", 2) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "sal_core.backends.gpu_memory"]
    assert len(lines) == 1 and "someorg/not-downloaded" in lines[0] and "Hub cache" in lines[0]


# --- the estimate of what a PRM needs beside the policy (backends.memory_estimate), and vLLM's share ---


BENCH = Path(__file__).resolve().parent.parent / "bench"


def _table_module():
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_memory_table
    finally:
        sys.path.remove(str(BENCH))
    return gpu_memory_table


def test_parameter_count_from_config_equals_the_real_model(tiny_model_path: Path, tmp_path: Path) -> None:
    """The count the estimate uses, against the parameters of real (tiny) checkpoints of both shapes."""
    from tiny_qwen_prm import tiny_qwen_prm
    from transformers import AutoModelForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    arch = Architecture.from_config(read_config(tiny_model_path))
    assert arch.parameters() == sum(p.numel() for p in llama.parameters())
    qwen_folder = tiny_qwen_prm(tiny_model_path, tmp_path / "qwen-prm")
    config = json.loads((qwen_folder / "config.json").read_text())
    arch = Architecture.from_config(config)
    assert arch.head == "score" and arch.qkv_bias
    assert arch.parameters() * 4 == weight_bytes(qwen_folder, None)  # float32 as saved: every tensor counted


def test_published_checkpoints_have_their_published_sizes() -> None:
    configs = _table_module().CONFIGS
    published = {  # parameter counts stated by the model cards / safetensors metadata
        "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data": 8_030_261_248,
        "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
        "Qwen/Qwen2.5-1.5B-Instruct": 1_543_714_304,
        "nvidia/AceMath-7B-Instruct": 7_615_616_512,
    }
    for path, count in published.items():
        assert Architecture.from_config(configs[path]).parameters() == count, path


def test_an_8b_prm_needs_more_than_its_weights_at_the_published_batch() -> None:
    """The issue's case: RLHFlow 8B at batch 8 x 4096 in bfloat16 needs its 15 GiB of weights plus 4 GiB of
    prefix cache (128 KiB a token) and activations: more than the 20 GiB that 0.5 of a 40 GB GPU leaves."""
    arch = Architecture.from_config(_table_module().CONFIGS["RLHFlow/Llama3.1-8B-PRM-Deepseek-Data"])
    assert arch.kv_bytes_per_token(2) == 128 * 1024
    need = prm_need(arch, "bfloat16", 8, 4096, caches_prefixes=True)
    assert need.prefix_cache == 4 * GIB and need.weights == 8_030_261_248 * 2
    assert need.total > 20 * GIB
    assert prm_need(arch, "bfloat16", 8, 4096, caches_prefixes=False).prefix_cache == 0


def test_vllm_gets_what_the_prm_leaves_and_a_misfit_is_one_line() -> None:
    model = job("beam_search").model
    need = prm_need(
        Architecture.from_config(_table_module().CONFIGS["RLHFlow/Llama3.1-8B-PRM-Deepseek-Data"]),
        "bfloat16",
        8,
        4096,
        True,
    )
    share = plan_share(80 * GIB, 80 * GIB, need, 5 * GIB, model, PRM)
    assert ALONE > share > BESIDE_PRM and (1 - share) * 80 * GIB >= need.total
    tiny = prm_need(Architecture(64, 1, 1, 1, 64, 64, 10, False, False, "lm"), "float16", 1, 8, False)
    assert plan_share(80 * GIB, 80 * GIB, tiny, None, model, PRM) == ALONE
    with pytest.raises(ModelError) as err:  # too little free memory for the policy beside the PRM
        plan_share(40 * GIB, 24 * GIB, need, 5 * GIB, model, PRM)
    message = str(err.value)
    assert (
        "\n" not in message and message.startswith("prms.rlhflow-8b: needs") and "prms.rlhflow-8b.batch_size" in message
    )
    configured = job("beam_search", gpu_memory_utilization=0.5).model
    with pytest.raises(ModelError, match="models.llama-1b.gpu_memory_utilization=0.5"):  # 20 GiB left: too little
        plan_share(40 * GIB, 40 * GIB, need, 5 * GIB, configured, PRM)
    assert plan_share(80 * GIB, 80 * GIB, need, 5 * GIB, configured, PRM) == 0.5


def test_the_share_is_planned_from_the_driver_before_the_engine(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prm = PRMSettings(name="judge", type="rlhflow", path=str(tiny_model_path), batch_size=8, max_length=512)
    model = ModelSettings(name="tiny", path=str(tiny_model_path), backend="vllm")
    cuda_before = torch.cuda.is_initialized()  # False but where an earlier test ran a model on a real GPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpu_info, "nvidia_smi_rows", lambda: ["0, GPU-1, NVIDIA H100, 9.0, 81559, 80000, 580.65.06"])
    gpu_info.forget()
    try:
        share = vllm_share_beside_prm(model, prm, caches_prefixes=True)
        monkeypatch.setattr(gpu_info, "nvidia_smi_rows", lambda: None)
        gpu_info.forget()
        unknown = vllm_share_beside_prm(model, prm, caches_prefixes=True)
    finally:
        gpu_info.forget()
    assert share == ALONE  # a tiny PRM leaves vLLM its whole share
    assert unknown is None  # no driver to ask: the fixed default applies
    assert torch.cuda.is_initialized() == cuda_before


def test_docs_table_is_what_the_code_computes() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "gpu.md").read_text()
    assert _table_module().table() in docs


def test_a_config_of_another_shape_skips_the_plan_in_one_log_line(tmp_path: Path, caplog) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 512}))
    prm = PRMSettings(name="other", type="trl", path=str(tmp_path))
    caplog.set_level("WARNING", logger="sal_core.backends.gpu_memory")
    assert prm_need_for(prm, "bfloat16", caches_prefixes=False) is None
    assert [r.getMessage() for r in caplog.records if "memory estimate skipped" in r.getMessage()]
