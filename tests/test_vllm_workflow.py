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
from workflow_runs import REPO, snakemake, workflow_config, write_config

pytest.importorskip("vllm", reason="vLLM is not installed here (make vllm-env; make test-vllm)")
pytestmark = pytest.mark.vllm


def run_with_servers(workdir: Path, serving: dict, served: dict, *serve: str) -> None:
    """`sal with-servers --config serving.yaml SERVE... -- snakemake` in `workdir`: the servers of the
    `serving` config's entries, the grid of the `served` one; fails the test with both outputs' tails."""
    (workdir / "serving.yaml").write_text(yaml.safe_dump(serving, sort_keys=False))
    write_config(workdir, served)
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    snakemake_argv = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", "."]
    snakemake_argv += ["--configfile", "config.yaml", "--cores", "2", "--show-failed-logs"]
    argv = [sys.executable, "-m", "sal_core.cli", "with-servers", "--config", "serving.yaml", *serve]
    argv += ["--timeout", "600", "--", *snakemake_argv]
    result = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


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
    shutil.copytree(smollm2_path, workdir / "resources" / "models" / "smollm2-135m-instruct")
    run_with_servers(workdir, serving, served, "--serve", "smollm2-135m")
    table = pd.read_csv(workdir / "results/wf/accuracy.csv")
    assert set(table["approach"]) == {"bon"}
    assert "vllm" in (workdir / "logs" / "servers" / "smollm2-135m.log").read_text().lower()


def test_best_of_n_and_beam_search_scored_by_a_prm_that_with_servers_serves_through_vllm_pooling(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    """`sal with-servers --serve-vllm qprm` starts `vllm serve --runner pooling` for a qwen2.5-math
    entry; the grid reads it as `type: server, api: vllm-pooling`: Best-of-N's scoring job and beam
    search's in-search scores equal the in-process family's on the same weights (float32)."""
    from tiny_qwen_prm import tiny_qwen_prm

    from sal_core.prm import load_prm
    from sal_core.settings.jobs import PRMSettings

    workdir = tmp_path / "wf"
    workdir.mkdir()
    folder = tiny_qwen_prm(tiny_model_path, tmp_path / "qprm")
    entry = {"type": "qwen2.5-math", "path": str(folder), "max_length": 1024}
    base = workflow_config()
    base["dataset"].update(limit=2, shard_size=2)
    base["models"]["tiny"] = {"path": str(tiny_model_path), "max_model_len": 512, "batch_size": 32}
    base["approaches"] = {"bon": base["approaches"]["bon"], "beam": base["approaches"]["beam"]}
    base.update(search_prm="qprm", score_prms=["qprm"])
    serving = {**base, "prms": {"qprm": entry}}
    served = {**base, "prms": {"qprm": {"type": "server", "api": "vllm-pooling", "served_model": "qprm"}}}
    served["prms"]["qprm"].update(path=str(folder), max_length=1024)  # its tokenizer, the server's context
    served["servers"] = {"qprm": {"service_file": "services/qprm.json"}}
    run_with_servers(workdir, serving, served, "--serve-vllm", "qprm")
    assert "pooling" in (workdir / "logs" / "servers" / "qprm.log").read_text().lower()
    local = load_prm(PRMSettings(name="qprm", device="cpu", **entry))
    [bon] = list(workdir.glob("results/wf/tiny/bon/*/*/shards/*/scores/qprm.parquet"))
    [beam] = list(workdir.glob("results/wf/tiny/beam-*/*/*/shards/*/completions.parquet"))
    for path, column in ((bon, "scores"), (beam, "search_scores")):
        frame = pd.read_parquet(path)
        if "completions" not in frame.columns:  # a scores shard: beside its completions
            frame = pd.read_parquet(path.parent.parent / "completions.parquet").assign(scores=frame["scores"])
        want = local.score(list(frame["problem"]), [list(c) for c in frame["completions"]])
        got = [[list(s) for s in row] for row in frame[column]]
        assert [[len(s) for s in p] for p in got] == [[len(s) for s in p] for p in want], path
        flat_got = [x for p in got for s in p for x in s]
        assert flat_got == pytest.approx([x for p in want for s in p for x in s], abs=1e-4), path
