"""A particle filtering job with its PRM behind `sal serve-prm` (issue 20), as tests/test_workflow_served.py
does for beam search, cut down to one generate job: the served PRM guides the search to the same
particles, weights and choice as the PRM in process, and the shard holds them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_workflow_served import RUN_SECRET, specs, start

from sal_core.backends.http_client import RUN_KEY_ENV
from sal_core.pipeline.generate import generate_shard
from sal_core.serving.launch import stop_server
from sal_core.settings.endpoint import ServerLocation
from sal_core.settings.jobs import GenerateJob, ModelSettings, PRMSettings, SearchSettings
from sal_core.tables import read_table, write_table_atomic

SEARCH = {"method": "particle_filtering", "n": 4, "num_iterations": 2, "max_tokens": 8, "temperatures": [1.0]}


def job(model: Path, prm: PRMSettings) -> GenerateJob:
    return GenerateJob(
        model=ModelSettings(name="tiny", path=str(model), max_model_len=512, batch_size=8),
        search=SearchSettings.from_dict(SEARCH),
        prm=prm,
    )


def test_a_particle_job_guided_by_a_served_prm_matches_the_in_process_one(
    tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    problems = tmp_path / "problems.parquet"
    frame = pd.DataFrame(
        {"problem_id": ["a", "b"], "problem": ["What is 2 + 3?", "What is 7 - 4?"], "answer": ["5", "3"]}
    )
    write_table_atomic(frame.assign(level=None), problems)
    local = PRMSettings(name="tiny-judge", type="rlhflow", path=str(tiny_model_path), batch_size=8, max_length=512)
    generate_shard(problems, 0, 2, job(tiny_model_path, local), tmp_path / "local.parquet")

    spec = specs(tiny_model_path)["tiny-judge"]
    process, _ = start(spec, tmp_path)
    monkeypatch.setenv(RUN_KEY_ENV, RUN_SECRET)  # the run's key, as `sal with-servers` gives its jobs
    try:
        served = PRMSettings(name="tiny-judge", type="server", served_model="tiny-judge")
        servers = {"tiny-judge": ServerLocation(service_file=str(tmp_path / "tiny-judge.json"))}
        generate_shard(problems, 0, 2, job(tiny_model_path, served), tmp_path / "served.parquet", servers)
    finally:
        stop_server(process)

    here, there = read_table(tmp_path / "local.parquet"), read_table(tmp_path / "served.parquet")
    for column in ("completions", "selected", "generated_tokens", "prm_tokens"):
        assert here[column].map(_plain).tolist() == there[column].map(_plain).tolist(), column
    for ours, theirs in zip(here["weights"], there["weights"], strict=True):
        assert len(ours) == 4 and list(theirs) == pytest.approx(list(ours), abs=1e-4)
    assert all(len(sweeps) == 1 and len(sweeps[0]) >= 1 for sweeps in there["ess"])  # one sweep, an ESS per step


def _plain(value):
    return list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
