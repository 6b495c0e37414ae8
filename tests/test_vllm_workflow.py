"""The workflow on vLLM's real engine (its CPU build here): a cut-down grid (Best-of-N, beam search,
DVTS, one shard, one seed) through Snakemake, the policy model in vLLM and the in-search PRM beside it
in the same process, as `make demo-vllm` runs the embedded default. Each job's charged tokens are
checked against the engine's own counter, which the job logs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import REPO, snakemake, write_config

pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm


def test_grid_runs_on_vllm_and_charges_what_the_engine_generated(tmp_path: Path, smollm2_path: Path) -> None:
    """The embedded default with config/overlays/vllm.yaml, cut to one shard of 2 problems, one sampling, one
    seed and beam search at n=2 (SmolLM2: vLLM's CPU attention takes no heads under 32 dimensions,
    the tiny random model's have 16)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for key, part in yaml.safe_load((REPO / "config" / "overlays" / "vllm.yaml").read_text()).items():
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


def test_grid_runs_through_vllm_serve_started_by_with_servers(tmp_path: Path, smollm2_path: Path) -> None:
    """`sal with-servers` starts a real `vllm serve` for the policy (a `backend: vllm` entry) and the
    grid's generate jobs reach it through `backend: openai`, with the run's key and no other."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    base["dataset"].update(name="wf", limit=2, shard_size=2)
    base["approaches"] = {"bon": base["approaches"]["bon"]}
    base["samplings"] = {"t0.8": base["samplings"]["t0.8"]}
    base["seeds"] = [0]
    serving = {**base, "models": {"smollm2-135m": {**base["models"]["smollm2-135m"], "backend": "vllm"}}}
    model = {**base["models"]["smollm2-135m"], "backend": "openai", "served_model": "smollm2-135m"}
    model.pop("batch_size")
    served = {**base, "models": {"smollm2-135m": model}}
    served["servers"] = {"smollm2-135m": {"service_file": "services/smollm2-135m.json"}}
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "serving.yaml").write_text(yaml.safe_dump(serving, sort_keys=False))
    write_config(workdir, served)
    shutil.copytree(smollm2_path, workdir / "resources" / "models" / "smollm2-135m-instruct")
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    snakemake_argv = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", "."]
    snakemake_argv += ["--configfile", "config.yaml", "--cores", "2", "--show-failed-logs"]
    argv = [sys.executable, "-m", "sal_core.cli", "with-servers", "--config", "serving.yaml"]
    argv += ["--serve", "smollm2-135m", "--timeout", "600", "--", *snakemake_argv]
    result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = pd.read_csv(workdir / "results/wf/accuracy.csv")
    assert set(table["approach"]) == {"bon"}
    assert "vllm" in (workdir / "logs" / "servers" / "smollm2-135m.log").read_text().lower()
