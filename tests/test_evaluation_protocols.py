"""`evaluation.protocols` (issue 18, item 1): the published grid reports search-and-learn's protocol next to
the default one; the first protocol's jobs keep their exact params, so adding a protocol reruns nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import REPO, RUN, planned_jobs, snakemake, workflow_config, write_config

from sal_core.errors import ConfigError
from sal_core.evaluation.protocols import evaluation_flags, evaluation_protocols
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config
from sal_core.settings.jobs import PARTICLE_KEYS

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIGS = sorted((REPO / "config").glob("*.yaml")) + sorted((REPO / "config" / "experiments").glob("*.yaml"))

#: the flags string common.smk's evaluation_options() gave before `protocols` existed (git show HEAD~:...)
OLD_FLAGS = {
    "protocol": "--protocol",
    "aggregation": "--aggregation",
    "num_subsamples": "--num-subsamples",
    "timeout": "--timeout",
}


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "copy"
    shutil.copytree(finished_run, workdir, symlinks=True)  # copy2 keeps mtimes
    return workdir


def _old(options: dict) -> str:
    return " ".join(f"{flag} {options[key]}" for key, flag in OLD_FLAGS.items() if key in options)


@pytest.mark.parametrize(
    "evaluation",
    [{}, {"aggregation": "last", "num_subsamples": 64, "timeout": 5}, {"protocol": "sal", "timeout": 2}],
)
def test_a_single_protocol_gives_the_flags_it_always_gave(evaluation: dict) -> None:
    assert evaluation_flags(evaluation) == _old(evaluation)
    listed = {
        **evaluation,
        "protocols": [evaluation.get("protocol", "default"), "sal" if "protocol" not in evaluation else "default"],
    }
    assert evaluation_flags(listed) == _old(evaluation)  # the first of a list: the same jobs


def test_protocol_lists_are_checked_in_one_line() -> None:
    assert evaluation_protocols({}) == ["default"]
    assert evaluation_protocols({"protocol": "sal"}) == ["sal"]
    assert evaluation_protocols({"protocols": ["default", "sal"]}) == ["default", "sal"]
    with pytest.raises(ConfigError, match=r"evaluation\.protocol: 'sal' but evaluation\.protocols starts with"):
        evaluation_protocols({"protocol": "sal", "protocols": ["default", "sal"]})
    with pytest.raises(ConfigError, match=r"evaluation\.protocols: 'hnc' is not one of"):
        evaluation_protocols({"protocols": ["hnc"]})


def test_the_published_grid_reports_both_protocols() -> None:
    config = yaml.safe_load((REPO / "config" / "experiments" / "math500.yaml").read_text())
    assert evaluation_protocols(config["evaluation"]) == ["default", "sal"]


@pytest.mark.slow
def test_adding_sal_to_a_finished_grid_runs_only_its_jobs(run_copy: Path) -> None:
    config = workflow_config()
    config.setdefault("evaluation", {})["protocols"] = ["default", "sal"]
    write_config(run_copy, config)
    jobs = planned_jobs(run_copy)
    runs = [RUN.format(approach=a, sampling="mix") for a in ("bon", "beam-n2.tiny-judge", "dvts.tiny-judge")]
    assert jobs == {
        *{("evaluate_protocol", f"{run}/metrics/tiny-judge.sal.parquet") for run in runs},
        ("aggregate_protocol", "results/wf/accuracy.sal.csv"),
        ("all", ""),
    }
    before = (run_copy / "results/wf/accuracy.csv").read_bytes()
    snakemake(run_copy)
    assert (run_copy / "results/wf/accuracy.csv").read_bytes() == before
    sal = pd.read_csv(run_copy / "results/wf/accuracy.sal.csv")
    assert (
        set(sal["approach"]) == {"bon", "beam", "dvts"} and (run_copy / "results/wf/compute_optimal.sal.csv").exists()
    )
    assert planned_jobs(run_copy) == set()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_upgrading_changes_no_jobs_settings(path: Path) -> None:
    """Issue 18's settings at their defaults: no job's settings JSON gains a key, and the first protocol's
    evaluate flags are the old ones (so a finished grid's dry run lists nothing)."""
    config = yaml.safe_load(path.read_text())
    grid = check_config(config, SCHEMA)
    for run in grid.runs:
        job = to_json(run.job)
        assert "step_separator" not in job and "temperature_layout" not in job, run.run_id
        # issue 20's particle filtering keys, at their defaults in every shipped config
        assert not any(f'"{key}"' in job for key in PARTICLE_KEYS), run.run_id
    for name, prm in grid.prms.items():
        assert "step_separator" not in prm.fingerprint(), name
    evaluation = {k: v for k, v in config.get("evaluation", {}).items() if k != "protocols"}
    assert evaluation_flags(config.get("evaluation", {})) == _old(evaluation)
