"""`score` with the PRM that guided a beam search reuses the search's step scores, exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from sal_core.pipeline.generate import generate_shard
from sal_core.pipeline.score import score_shard
from sal_core.settings.jobs import GenerateJob, ModelSettings, PRMSettings, SearchSettings
from sal_core.tables import read_metadata, read_table, write_table_atomic


@pytest.fixture(scope="module")
def beam_shard(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PRMSettings]:
    root = tmp_path_factory.mktemp("reuse")
    problems = pd.DataFrame(
        {
            "problem_id": ["a", "b"],
            "problem": ["What is 1 + 1?", "What is 2 + 5?"],
            "answer": ["2", "7"],
            "level": [None, None],
        }
    )
    write_table_atomic(problems, root / "problems.parquet")
    prm = PRMSettings(name="judge", type="rlhflow", path=str(tiny_model_path), max_length=512)
    job = GenerateJob(
        model=ModelSettings(name="tiny", path=str(tiny_model_path), max_model_len=512),
        search=SearchSettings(method="beam_search", n=4, beam_width=2, num_iterations=2, max_tokens=8),
        prm=prm,
    )
    out = generate_shard(root / "problems.parquet", 0, 2, job, root / "completions.parquet")
    return out, prm


def test_same_prm_reuses_search_scores_and_they_equal_a_fresh_pass(beam_shard, tmp_path: Path) -> None:
    completions, prm = beam_shard
    reused = score_shard(completions, prm, tmp_path / "reused.parquet")
    assert read_metadata(reused).get("reused") == "search"
    # batch_size does not change scores but does change the fingerprint: the PRM really runs
    fresh = score_shard(completions, dataclasses.replace(prm, batch_size=3), tmp_path / "fresh.parquet")
    assert "reused" not in read_metadata(fresh)
    # the reuse read nothing; the fresh pass reports what its PRM read
    assert read_table(reused)["prm_tokens"].tolist() == [0, 0]
    assert all(t > 0 for t in read_table(fresh)["prm_tokens"])
    got, want = read_table(reused)["scores"], read_table(fresh)["scores"]
    for got_problem, want_problem in zip(got, want, strict=True):
        for g, w in zip(got_problem, want_problem, strict=True):
            assert list(g) == pytest.approx(list(w), abs=1e-4)


def test_other_prm_settings_never_reuse(beam_shard, tmp_path: Path) -> None:
    completions, prm = beam_shard
    other = dataclasses.replace(prm, name="other")
    assert "reused" not in read_metadata(score_shard(completions, other, tmp_path / "other.parquet"))
