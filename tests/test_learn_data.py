"""The learn loop's fixed data: the training pools and held-out sets (GSM8K, and the one-operation
arithmetic of config/experiments/learn_cpu.yaml) are valid built-in datasets and share no problem (by
whitespace-normalised text) with each other or with ProcessBench: the shipped ProcessBench subset
always, and all 3,400 ProcessBench problems where ../shared is present."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sal_core.learn.processbench import SPLITS, load_processbench
from sal_core.pipeline.prepare_dataset import builtin_datasets, load_problems
from sal_core.settings.dataset import DatasetSettings

SHARED_PROCESSBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "processbench"


def _texts(problems) -> set[str]:
    return {" ".join(str(p).split()) for p in problems}


SETS = ("gsm8k_train_pool", "gsm8k_heldout", "arith_train_pool", "arith_heldout")
POOLS = ("gsm8k_train_pool", "arith_train_pool")
HELDOUT = ("gsm8k_heldout", "arith_heldout")


@pytest.fixture(scope="module")
def pools() -> dict[str, set[str]]:
    out = {}
    for name in SETS:
        frame = load_problems(DatasetSettings(name=name, source="builtin", path=name))
        assert frame["answer"].str.fullmatch(r"-?\d+(\.\d+)?").all(), "answers are plain numbers"
        assert frame["problem_id"].str.startswith(name.split("_")[0] + "-").all()
        out[name] = _texts(frame["problem"])
        assert len(out[name]) == len(frame), "no repeated problem inside a set"
    return out


def test_pools_and_heldout_sets_are_builtin_and_sized(pools) -> None:
    assert set(SETS) <= set(builtin_datasets())
    assert "processbench" not in " ".join(builtin_datasets()), "the ProcessBench subset is not a problem set"
    assert [len(pools[name]) for name in SETS] == [200, 100, 164, 60]


@pytest.mark.parametrize(("pool", "heldout"), list(zip(POOLS, HELDOUT, strict=True)))
def test_pool_and_heldout_are_disjoint(pools, pool, heldout) -> None:
    assert not pools[pool] & pools[heldout]


def test_arithmetic_answers_are_right_and_every_operation_is_held_out() -> None:
    symbols = {"add": "+", "sub": "-", "mul": "\\times"}
    for name in ("arith_train_pool", "arith_heldout"):
        frame = load_problems(DatasetSettings(name=name, source="builtin", path=name))
        assert set(frame["level"]) == set(symbols)
        for problem, answer, level in zip(frame["problem"], frame["answer"], frame["level"], strict=True):
            a, symbol, b = re.fullmatch(r"What is \$(\d+) (\S+) (\d+)\$\?", problem).groups()
            assert symbol == symbols[level]
            assert int(answer) == {"add": int(a) + int(b), "sub": int(a) - int(b), "mul": int(a) * int(b)}[level]


def test_no_problem_is_a_worked_example_of_a_config_prompt(pools) -> None:
    """A few-shot prompt that solves a problem of a set as its example would hand the policy its answer."""
    configs = sorted((Path(__file__).resolve().parent.parent / "config").glob("**/*.yaml"))
    examples = set()
    for config in configs:
        for model in (yaml.safe_load(config.read_text()).get("models") or {}).values():
            examples |= _texts(re.findall(r"^Problem: (.+)$", (model or {}).get("system_prompt", ""), re.M))
    assert {"What is $4 + 4$?", "What is $10 - 3$?"} <= examples
    assert not set().union(*pools.values()) & examples


def test_no_processbench_problem_in_the_subset_is_in_the_pools(pools) -> None:
    processbench = _texts(load_processbench()["problem"])
    assert len(processbench) > 150
    assert not set().union(*pools.values()) & processbench


@pytest.mark.skipif(not SHARED_PROCESSBENCH.is_dir(), reason="needs ../shared/data/processbench")
def test_no_processbench_problem_at_all_is_in_the_pools(pools) -> None:
    processbench = set()
    for split in SPLITS:
        processbench |= _texts(s["problem"] for s in json.loads((SHARED_PROCESSBENCH / f"{split}.json").read_text()))
    assert len(processbench) == 2842  # distinct problems among the 3,400 samples
    assert not set().union(*pools.values()) & processbench
