"""Models staged once for offline nodes (docs/offline.md): `sal stage-models` fetches a grid's Hub
checkpoints from a Hub (here tests/fake_hub.py on 127.0.0.1, recording every request, with
HF_ENDPOINT pointed at it) into the Hub cache; then the workflow's jobs load them with ZERO requests
to the Hub; a model not staged fails in one line naming it and the staging command; a gated model
without a token is one line, and nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_hub import FakeHub
from workflow_runs import SNAKEFILE

from sal_core.errors import ConfigError, ModelError
from sal_core.hub import checkpoint, go_offline
from sal_core.pipeline.stage_models import SAFETENSORS_INDEX, dry_run_requested, select_files
from sal_core.settings.jobs import ModelSettings
from sal_core.tables import read_table, write_table_atomic

POLICY, GATED = "tiny-org/policy", "tiny-org/gated"
COMPLETIONS = [
    {
        "problem_id": "p0",
        "problem": "What is 2 + 3?",
        "answer": "5",
        "level": "1",
        "completions": ["Add.\n\n$2 + 3 = \\boxed{5}$", "It is $\\boxed{6}$."],
        "completion_tokens": [9, 6],
        "temperatures": [1.0, 1.0],
        "groups": [0, 1],
        "finish_reasons": ["stop", "stop"],
    }
]
#: files a staged checkpoint must not bring: Meta's original/ weights, a GGUF copy
NOT_STAGED = {"original/consolidated.00.pth": b"x" * 1000, "model-q4.gguf": b"y" * 500}


@pytest.fixture(scope="module")
def hub(tiny_model_path: Path):
    """The fake Hub with the tiny model (policy and RLHFlow judge in one) as a public and a gated repo."""
    fake = FakeHub()
    fake.add(POLICY, tiny_model_path, extra=NOT_STAGED)
    fake.add(GATED, tiny_model_path, gated=True)
    fake.start()
    yield fake
    fake.stop()


def hub_env(hub: FakeHub, home: Path, **extra: str) -> dict[str, str]:
    """This environment without Hub settings or tokens, pointed at the fake Hub and its own HF_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGING"))}
    return {**env, "HF_ENDPOINT": hub.url, "HF_HOME": str(home), **extra}


def grid_config(workdir: Path, policy: str = POLICY, judge: str = POLICY, **model: str) -> Path:
    """The smallest grid with a Hub policy and a Hub PRM: Best-of-N on one shard of 2 problems."""
    config = {
        "dataset": {"name": "staged", "source": "builtin", "path": "easy_math", "limit": 2, "shard_size": 2},
        "models": {"tiny": {"path": policy, "max_model_len": 256, **model}},
        "prms": {"judge": {"type": "rlhflow", "path": judge, "max_length": 256}},
        "score_prms": ["judge"],
        "approaches": {"bon": {"method": "best_of_n", "n": 2, "max_tokens": 8}},
        "samplings": {"t1": {"temperatures": [1.0]}},
        "seeds": [0],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def sal(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sal_core.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def snakemake(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", "2"]
    command += ["--configfile", str(workdir / "config.yaml"), *args]
    return subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=600)


def errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


@pytest.fixture(scope="module")
def staged(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A work folder whose grid was staged from the fake Hub (after a dry run that fetched nothing)."""
    workdir = tmp_path_factory.mktemp("staged")
    env = hub_env(hub, workdir / "hf-home")
    config = grid_config(workdir)
    dry = sal(env, "stage-models", "--config", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    files = len(hub.repos[POLICY].files) - len(NOT_STAGED)
    assert f"{POLICY} (models.tiny.path, prms.judge.path): {files} files" in dry.stdout, dry.stdout
    assert "MB to fetch" in dry.stdout
    assert not [r for r in hub.requests if "/resolve/" in r[1]], "a dry run downloads nothing"
    done = sal(env, "stage-models", "--config", str(config))
    assert done.returncode == 0, done.stderr
    return workdir, env


def test_staging_fetches_top_level_files_and_one_copy_of_the_weights(staged, hub: FakeHub) -> None:
    workdir, env = staged
    folder = Path(sal(env, "stage-models", "--config", str(workdir / "config.yaml")).stdout.split(": ")[-1].strip())
    assert folder.is_dir() and folder.parent.name == "snapshots", folder
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not names & {"original", "model-q4.gguf"}
    again = sal(env, "stage-models", "--config", str(workdir / "config.yaml"), "--dry-run")
    assert "in all: " in again.stdout and ", 0 B to fetch" in again.stdout, again.stdout


def test_jobs_load_staged_models_without_a_request_to_the_hub(staged, hub: FakeHub) -> None:
    """generate (the policy) and score (the PRM) as the workflow runs them: not one request."""
    workdir, env = staged
    hub.requests.clear()
    result = snakemake(workdir, env, "--until", "score")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "results/staged/tiny/bon/t1/seed-0/shards/0-2/scores/judge.parquet").is_file()
    assert hub.requests == []


def test_a_model_not_staged_is_one_line_naming_it_and_the_command(staged, hub: FakeHub, tmp_path: Path) -> None:
    _, env = staged
    config = grid_config(tmp_path, policy="tiny-org/absent")
    hub.requests.clear()
    run = snakemake(tmp_path, env)
    assert run.returncode != 0
    assert "models.tiny.path (tiny-org/absent): not staged in the Hub cache" in run.stderr
    assert f"sal stage-models --config {config}" in run.stderr
    assert not (tmp_path / "results" / "staged" / "tiny").exists()
    dry = snakemake(tmp_path, env, "-n")  # a dry run lists the jobs and only warns
    assert dry.returncode == 0 and "warning: models.tiny.path (tiny-org/absent): not staged" in dry.stderr
    job = '{"model": {"name": "tiny", "path": "tiny-org/absent"}, "search": {"method": "best_of_n", "n": 1}}'
    problems = next(tmp_path.glob("results/*/problems.parquet"))
    out = tmp_path / "c.parquet"
    direct = sal(
        env, "generate", "--problems", str(problems), "--start", "0", "--end", "1", "--job", job, "--out", str(out)
    )
    assert direct.returncode == 2 and not out.exists()
    (line,) = errors(direct)
    assert "models.tiny.path: tiny-org/absent is not staged" in line and "sal stage-models --config" in line
    assert hub.requests == []


PROCESSBENCH_README = """---
configs:
- config_name: default
  data_files:
  - split: gsm8k
    path: gsm8k.jsonl
---
"""


def test_the_processbench_job_reads_its_staged_hub_dataset_without_a_request(staged, hub: FakeHub) -> None:
    """A Hub dataset a learn job reads is staged too (loaded once into datasets' cache)."""
    workdir, env = staged
    folder = workdir / "processbench-repo"
    folder.mkdir()
    (folder / "README.md").write_text(PROCESSBENCH_README)
    sample = {"id": "g0", "problem": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "So 5."], "label": -1}
    (folder / "gsm8k.jsonl").write_text("\n".join(json.dumps({**sample, "id": f"g{i}"}) for i in range(2)) + "\n")
    hub.add("bench-org/processbench", folder, dataset=True)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["processbench"] = {"prms": ["judge"], "data": "bench-org/processbench", "splits": ["gsm8k"]}
    bench_config = workdir / "bench.yaml"
    bench_config.write_text(yaml.safe_dump(config))
    done = sal(env, "stage-models", "--config", str(bench_config))
    assert done.returncode == 0, done.stderr
    assert "staged dataset bench-org/processbench (processbench.data, split gsm8k): 2 rows" in done.stdout
    hub.requests.clear()
    prm = json.dumps({"name": "judge", "type": "rlhflow", "path": POLICY, "max_length": 256})
    flags = ["--data", "bench-org/processbench", "--splits", "gsm8k", "--no-plot", "--out", str(workdir / "pb")]
    job = sal(env, "processbench", "--prm", prm, *flags)
    assert job.returncode == 0, job.stderr[-2000:]
    assert (workdir / "pb" / "judge.csv").is_file()
    assert hub.requests == []


def test_a_remote_code_prm_is_staged_and_scores_offline(staged, hub: FakeHub, tiny_model_path: Path) -> None:
    """Qwen2.5-Math-PRM's layout: modelling code shipped in the repository (trust_remote_code)."""
    from tiny_qwen_prm import tiny_qwen_prm

    workdir, env = staged
    hub.add("tiny-org/qwen-prm", tiny_qwen_prm(tiny_model_path, workdir / "qprm-repo"))
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["prms"]["qprm"] = {"type": "qwen2.5-math", "path": "tiny-org/qwen-prm", "max_length": 256}
    qwen_config = workdir / "qwen.yaml"
    qwen_config.write_text(yaml.safe_dump(config))
    done = sal(env, "stage-models", "--config", str(qwen_config))
    assert done.returncode == 0, done.stderr
    completions = write_table_atomic(COMPLETIONS, workdir / "qwen-shard" / "completions.parquet")
    hub.requests.clear()
    prm = json.dumps({"name": "qprm", "type": "qwen2.5-math", "path": "tiny-org/qwen-prm", "max_length": 256})
    out = workdir / "qwen-shard" / "scores" / "qprm.parquet"
    job = sal(env, "score", "--completions", str(completions), "--prm", prm, "--out", str(out))
    assert job.returncode == 0, job.stderr[-2000:]
    assert [len(s) for s in read_table(out)["scores"][0]] == [2, 1]
    assert list((workdir / "hf-home" / "modules").glob("transformers_modules/**/modeling_qwen2_rm.py"))
    assert hub.requests == []


def test_a_gated_model_without_a_token_is_one_line_and_nothing_is_fetched(hub: FakeHub, tmp_path: Path) -> None:
    config = grid_config(tmp_path, judge=GATED)
    env = hub_env(hub, tmp_path / "hf-home")
    hub.requests.clear()
    result = sal(env, "stage-models", "--config", str(config))
    assert result.returncode == 2
    (line,) = errors(result)
    assert f"prms.judge.path: {GATED} is gated" in line and "HF_TOKEN" in line
    assert not [r for r in hub.requests if "/resolve/" in r[1] and r[0] == "GET"], "nothing is downloaded"
    assert not list((tmp_path / "hf-home").glob("hub/models--*/snapshots/*/*")), "nor the public model beside it"
    hub.refused_tokens.add("hf_NotGrantedYet")
    refused = sal({**env, "HF_TOKEN": "hf_NotGrantedYet"}, "stage-models", "--config", str(config))
    assert refused.returncode == 2
    (line,) = errors(refused)
    assert f"prms.judge.path: {GATED} is gated and your token has no access" in line
    assert "hf_NotGrantedYet" not in refused.stdout + refused.stderr
    secret = "hf_NotARealTokenButSecret"
    granted = sal({**env, "HF_TOKEN": secret}, "stage-models", "--config", str(config))
    assert granted.returncode == 0, granted.stderr
    assert secret not in granted.stdout + granted.stderr


def test_a_hub_that_does_not_answer_is_one_line(hub: FakeHub, tmp_path: Path) -> None:
    closed = hub_env(hub, tmp_path / "hf-home", HF_ENDPOINT="http://127.0.0.1:9")  # the discard port: closed
    result = sal(closed, "stage-models", "--config", str(grid_config(tmp_path)), "--dry-run")
    assert result.returncode == 2
    (line,) = errors(result)
    assert "the Hub at http://127.0.0.1:9 does not answer" in line and "staging needs internet" in line


def test_a_revision_pins_the_snapshot_and_a_missing_one_is_one_line(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.repos[POLICY].commit
    env = hub_env(hub, tmp_path / "hf-home")
    config = grid_config(tmp_path, revision=commit)
    assert sal(env, "stage-models", "--config", str(config)).returncode == 0
    folder = tmp_path / "hf-home" / "hub" / "models--tiny-org--policy" / "snapshots" / commit
    assert (folder / "model.safetensors").is_file()
    missing = sal(env, "stage-models", "--config", str(grid_config(tmp_path, revision="v9")))
    (line,) = errors(missing)
    assert "models.tiny.path: tiny-org/policy: revision v9 does not exist on the Hub" in line


def test_a_revision_stays_out_of_a_jobs_identity_until_given_and_needs_a_hub_name() -> None:
    plain = ModelSettings.from_dict({"name": "m", "path": "org/model"}, "models.m")
    assert "revision" not in plain.identity()
    pinned = ModelSettings.from_dict({"name": "m", "path": "org/model", "revision": "abc"}, "models.m")
    assert pinned.identity()["revision"] == "abc"
    with pytest.raises(ConfigError, match="models.m.revision: for Hub models only"):
        ModelSettings.from_dict({"name": "m", "path": "resources/models/x", "revision": "abc"}, "models.m")


def test_local_folders_need_no_staging(tmp_path: Path) -> None:
    assert checkpoint(str(tmp_path), None, "models.m.path") == str(tmp_path)
    with pytest.raises(ModelError, match="models.m.path: org/absent-model is not staged"):
        checkpoint("org/absent-model", None, "models.m.path")


def test_files_chosen_one_copy_of_the_weights_at_the_top_level() -> None:
    sizes = {
        "config.json": 1,
        "tokenizer.json": 2,
        "modeling_prm.py": 3,
        SAFETENSORS_INDEX: 4,
        "model-00001-of-00002.safetensors": 10,
        "model-00002-of-00002.safetensors": 10,
        "consolidated.safetensors": 20,
        "pytorch_model-00001-of-00002.bin": 10,
        "pytorch_model.bin.index.json": 4,
        "original/consolidated.00.pth": 20,
        "model.gguf": 5,
        ".gitattributes": 1,
    }
    shards = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    chosen = select_files(sizes, lambda: shards)
    assert set(chosen) == {"config.json", "tokenizer.json", "modeling_prm.py", SAFETENSORS_INDEX, *shards}
    bins = {"config.json": 1, "pytorch_model.bin": 9, "onnx/model.onnx": 9}
    assert set(select_files(bins, lambda: set())) == {"config.json", "pytorch_model.bin"}


def test_dry_runs_are_recognised_on_snakemakes_command_line() -> None:
    assert dry_run_requested(["snakemake", "-n"]) and dry_run_requested(["snakemake", "-np", "--cores", "1"])
    assert dry_run_requested(["snakemake", "--dry-run"])
    assert not dry_run_requested(["snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"])


def test_jobs_go_offline_unless_the_environment_says_otherwise(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    go_offline(env)
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["VLLM_CACHE_ROOT"].endswith(".cache/vllm")
    chosen = {"HF_HUB_OFFLINE": "0", "VLLM_CACHE_ROOT": str(tmp_path)}
    go_offline(chosen)
    assert chosen["HF_HUB_OFFLINE"] == "0" and chosen["VLLM_CACHE_ROOT"] == str(tmp_path)
