"""The workflow on vLLM's real engine (its CPU build here): a cut-down grid (Best-of-N, beam search,
DVTS, one shard, one seed) through Snakemake, the policy model in vLLM and the in-search PRM beside it
in the same process, as `make demo-vllm` runs the embedded default. Each job's charged tokens are
checked against the engine's own counter, which the job logs."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import REPO, snakemake, write_config

pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm


def test_grid_runs_on_vllm_and_charges_what_the_engine_generated(tmp_path: Path, smollm2_path: Path) -> None:
    """The embedded default with config/vllm.yaml, cut to one shard of 2 problems, one sampling, one
    seed and beam search at n=2 (SmolLM2: vLLM's CPU attention takes no heads under 32 dimensions,
    the tiny random model's have 16)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key, part in yaml.safe_load((REPO / "config" / "vllm.yaml").read_text()).items():
        for name, value in part.items():
            config[key][name] = {**config[key][name], **value} if isinstance(value, dict) else value
    config["dataset"].update(name="wf", limit=2, shard_size=2)
    config["approaches"]["beam"]["n"] = [2]
    config["samplings"] = {"t0.8": config["samplings"]["t0.8"]}
    config["seeds"] = [0]
    workdir = tmp_path / "wf"
    workdir.mkdir()
    write_config(workdir, config)
    shutil.copytree(smollm2_path, workdir / "resources" / "models" / "smollm2-135m-instruct")
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    snakemake(workdir, "--jobs", "1", env=env)
    table = pd.read_csv(workdir / "results/wf/accuracy.csv")
    assert set(table["approach"]) == {"bon", "beam", "dvts"}
    logs = sorted((workdir / "logs").rglob("generate/*.log"))
    assert len(logs) == 3
    for log in logs:
        text = log.read_text()
        [line] = re.findall(r"engine counters: .*", text)
        generated, charged = re.search(r"(\d+) generated \(charged: (\d+)", line).groups()
        assert generated == charged and "MISMATCH" not in line, log


def test_demo_vllm_config_layers_over_the_default() -> None:
    """config/vllm.yaml changes the dataset's name and the policy's engine, nothing else."""
    overlay = yaml.safe_load((REPO / "config" / "vllm.yaml").read_text())
    assert overlay == {"dataset": {"name": "easy-math-vllm"}, "models": {"smollm2-135m": {"backend": "vllm"}}}
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert "smollm2-135m" in default["models"] and default["dataset"]["name"] != "easy-math-vllm"
