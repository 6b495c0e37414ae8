"""Hub upload: each run and PRM gets its own config name, and the merged table converts losslessly.

The upload itself needs the network and credentials, which tests do not have; a failed upload
must say which file, repository and config it was.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sal_core.errors import SalError
from sal_core.pipeline.push import config_name, push_merged, to_hub_dataset
from sal_core.tables import write_table_atomic

KEYS = {
    "dataset": "math500",
    "model": "qwen2.5-1.5b",
    "run_id": "beam-n4.rlhflow-8b",
    "sampling": "t0.8",
    "seed": "3",
    "prm": "rlhflow-8b",
    "method": "beam_search",
}


def merged(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {"problem_id": ["a", "b"], "completions": [["x", "y"], ["z"]], "scores": [[[0.1, 0.2], [0.3]], [[0.9]]]}
    )
    return write_table_atomic(frame, tmp_path / "merged.parquet", metadata=KEYS)


def test_config_name_is_unique_per_run_and_prm() -> None:
    assert config_name(KEYS) == "math500--qwen2.5-1.5b--beam-n4.rlhflow-8b--t0.8--seed-3--rlhflow-8b"
    assert config_name({**KEYS, "seed": "4"}) != config_name(KEYS)
    with pytest.raises(SalError, match="lacks run key"):
        config_name({"dataset": "x"})


def test_merged_table_converts_to_a_hub_dataset(tmp_path: Path) -> None:
    dataset = to_hub_dataset(merged(tmp_path))
    assert dataset.num_rows == 2
    assert dataset[0]["scores"] == [[pytest.approx(0.1), pytest.approx(0.2)], [pytest.approx(0.3)]]
    assert '"run_id": "beam-n4.rlhflow-8b"' in dataset.info.description


def test_failed_upload_names_file_repo_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SalError, match=r"merged.parquet to me/sal \(config math500--qwen2.5-1.5b--.*\) failed"):
        push_merged(merged(tmp_path), "me/sal", True, tmp_path / "receipt.json")
    assert not (tmp_path / "receipt.json").exists()
