"""The learn loop's fixed data: the GSM8K training pool and held-out set are valid built-in datasets
and share no problem (by whitespace-normalised text) with each other or with ProcessBench: the
shipped ProcessBench subset always, and all 3,400 ProcessBench problems where ../shared is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sal_core.learn.processbench import SPLITS, load_processbench
from sal_core.pipeline.prepare_dataset import builtin_datasets, load_problems
from sal_core.settings.dataset import DatasetSettings

SHARED_PROCESSBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "processbench"


def _texts(problems) -> set[str]:
    return {" ".join(str(p).split()) for p in problems}


@pytest.fixture(scope="module")
def pools() -> dict[str, set[str]]:
    out = {}
    for name in ("gsm8k_train_pool", "gsm8k_heldout"):
        frame = load_problems(DatasetSettings(name=name, source="builtin", path=name))
        assert frame["answer"].str.fullmatch(r"-?\d+(\.\d+)?").all(), "answers are plain numbers"
        assert frame["problem_id"].str.startswith("gsm8k-test-").all()
        out[name] = _texts(frame["problem"])
        assert len(out[name]) == len(frame), "no repeated problem inside a set"
    return out


def test_pool_and_heldout_are_builtin_and_sized(pools) -> None:
    assert {"gsm8k_train_pool", "gsm8k_heldout"} <= set(builtin_datasets())
    assert "processbench" not in " ".join(builtin_datasets()), "the ProcessBench subset is not a problem set"
    assert (len(pools["gsm8k_train_pool"]), len(pools["gsm8k_heldout"])) == (200, 100)


def test_pool_and_heldout_are_disjoint(pools) -> None:
    assert not pools["gsm8k_train_pool"] & pools["gsm8k_heldout"]


def test_no_processbench_problem_in_the_subset_is_in_the_pools(pools) -> None:
    processbench = _texts(load_processbench()["problem"])
    assert len(processbench) > 150
    assert not (pools["gsm8k_train_pool"] | pools["gsm8k_heldout"]) & processbench


@pytest.mark.skipif(not SHARED_PROCESSBENCH.is_dir(), reason="needs ../shared/data/processbench")
def test_no_processbench_problem_at_all_is_in_the_pools(pools) -> None:
    processbench = set()
    for split in SPLITS:
        processbench |= _texts(s["problem"] for s in json.loads((SHARED_PROCESSBENCH / f"{split}.json").read_text()))
    assert len(processbench) == 2842  # distinct problems among the 3,400 samples
    assert not (pools["gsm8k_train_pool"] | pools["gsm8k_heldout"]) & processbench
