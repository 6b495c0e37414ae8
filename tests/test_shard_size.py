"""A shard size per approach (`approaches.<name>.shard_size`): fewer engine starts for the approaches
whose shards are short, the same results, per-shard recovery, and nothing changed while it is unset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import RUN, new_workdir, planned_jobs, snakemake, workflow_config

from sal_core import paths
from sal_core.errors import ConfigError
from sal_core.missing import WHOLE_GRID, by_run
from sal_core.paths import plot_files
from sal_core.pipeline.prepare_dataset import shard_ranges
from sal_core.plan import Plan
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def embedded_default() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def plan_of(config: dict, num_problems: int) -> Plan:
    return Plan(check_config(config, SCHEMA), num_problems)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, r"^approaches.bon.shard_size: 0 is less than the minimum of 1$"),
        ("100", r"^approaches.bon.shard_size: '100' is not of type 'integer'$"),
        (2.5, r"^approaches.bon.shard_size: 2.5 is not of type 'integer'$"),
        (True, r"^approaches.bon.shard_size: True is not of type 'integer'$"),
    ],
)
def test_a_bad_shard_size_is_one_line_naming_the_key(value, message: str) -> None:
    config = embedded_default()
    config["approaches"]["bon"]["shard_size"] = value
    with pytest.raises(ConfigError, match=message):
        check_config(config, SCHEMA)


def test_the_grid_check_names_the_key_without_the_schema_too() -> None:
    from sal_core.settings.grid import build_grid

    config = embedded_default()
    config["approaches"]["bon"]["shard_size"] = 0
    with pytest.raises(ConfigError, match=r"^approaches.bon.shard_size: must be at least 1, got 0$"):
        build_grid(config)
    config["approaches"]["bon"]["shard_size"] = "x"
    with pytest.raises(ConfigError, match=r"^approaches.bon.shard_size: must be a whole number of problems, got 'x'$"):
        build_grid(config)


def test_unset_every_run_takes_the_dataset_shard_size_and_merge_inputs_stay_plain() -> None:
    config = embedded_default()
    plan = plan_of(config, 4)
    assert {run.shard_size for run in plan.grid.runs} == {config["dataset"]["shard_size"]}
    # what the merge rule was given before the key existed: the dataset's shards as templates, its size
    assert plan.merge_inputs(paths.COMPLETIONS) == plan.shard_templates(paths.COMPLETIONS, shard_ranges(4, 2))
    assert plan.merge_shard_size() == 2
    assert all(plan.run_shards(run) == [(0, 2), (2, 4)] for run in plan.grid.runs)


def test_shard_size_is_no_job_setting_and_changes_only_its_approach_shards() -> None:
    config = embedded_default()
    before = plan_of(config, 4)
    config["approaches"]["bon"]["shard_size"] = 4
    after = plan_of(config, 4)
    assert [to_json(run.job) for run in after.grid.runs] == [to_json(run.job) for run in before.grid.runs]
    changed = {
        run.run_id
        for run, old in zip(after.grid.runs, before.grid.runs, strict=True)
        if after.shard_files(run) != before.shard_files(old)
    }
    assert changed == {"bon"}
    bon = next(run for run in after.grid.runs if run.run_id == "bon")
    assert after.run_shards(bon) == [(0, 4)]
    # runs of several shard sizes: the merge inputs are looked up by run, each its own shards
    inputs = after.merge_inputs(paths.SCORES)
    assert callable(inputs)
    assert inputs(_Wildcards(run="bon")) == [paths.SCORES.replace("{start}-{end}", "0-4")]
    beam = next(run for run in after.grid.runs if run.method == "beam_search")
    assert inputs(_Wildcards(run=beam.run_id)) == after.shard_templates(paths.SCORES)
    assert after.merge_shard_size()(_Wildcards(run="bon")) == 4


def test_every_approach_with_one_shard_size_keeps_plain_merge_inputs() -> None:
    config = embedded_default()
    for approach in config["approaches"].values():
        approach["shard_size"] = 3
    plan = plan_of(config, 4)
    assert plan.merge_inputs(paths.COMPLETIONS) == plan.shard_templates(paths.COMPLETIONS, [(0, 3), (3, 4)])
    assert plan.merge_shard_size() == 3


def test_a_shard_bigger_than_the_dataset_is_one_shard_of_every_problem() -> None:
    config = embedded_default()
    config["approaches"]["bon"]["shard_size"] = 500
    plan = plan_of(config, 4)
    assert plan.run_shards(next(run for run in plan.grid.runs if run.run_id == "bon")) == [(0, 4)]


def test_missing_shard_targets_follow_each_run_shards() -> None:
    config = embedded_default()
    config["approaches"]["bon"]["shard_size"] = 4
    plan = plan_of(config, 4)
    every_shard = {path for run in plan.grid.runs for path in plan.shard_files(run)}
    lost = next(path for path in every_shard if "/bon/" in path and "completions" in path)
    assert "/shards/0-4/" in lost
    present = every_shard - {lost} | {paths.ACCURACY.format(dataset=plan.dataset)}
    assert plan.missing_shard_targets(exists=present.__contains__) == [lost]


def _plain(value):
    return list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value


class _Wildcards:
    def __init__(self, **values: str) -> None:
        self.__dict__.update(values)


def test_big_shards_merge_the_same_rows_and_a_deleted_one_reruns_alone(
    finished_run: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    """Best-of-N in one shard of all 4 problems beside beam search in the dataset's 2 shards, through
    Snakemake: Best-of-N merges the very rows of the dataset-sharded run (finished_run), and deleting
    its one shard lists only that shard's jobs and what is built from them."""
    config = workflow_config()
    config["approaches"] = {
        "bon": {**config["approaches"]["bon"], "shard_size": 4},
        "beam": config["approaches"]["beam"],
    }
    workdir = new_workdir(tmp_path / "big", config, tiny_model_path)
    snakemake(workdir)
    bon = RUN.format(approach="bon", sampling="mix")
    assert sorted(p.name for p in (workdir / bon / "shards").iterdir()) == ["0-4"]
    beam = next(p.parent.parent.name for p in (workdir / "results/wf/tiny").glob("beam*/mix/seed-0"))
    assert sorted(p.name for p in (workdir / RUN.format(approach=beam, sampling="mix") / "shards").iterdir()) == [
        "0-2",
        "2-4",
    ]
    merged = pd.read_parquet(workdir / bon / "merged/tiny-judge.parquet")
    reference = pd.read_parquet(finished_run / bon / "merged/tiny-judge.parquet")
    columns = ["problem_id", "completions", "completion_tokens", "temperatures"]
    assert merged[columns].map(_plain).equals(reference[columns].map(_plain))
    # the PRM reads the same completions in another batch (padding): equal to float precision
    for ours, theirs in zip(merged["scores"], reference["scores"], strict=True):
        for our_steps, their_steps in zip(ours, theirs, strict=True):
            assert list(our_steps) == pytest.approx(list(their_steps), abs=1e-5)

    shutil.rmtree(workdir / bon / "shards/0-4")
    jobs = planned_jobs(workdir)
    # `sal missing` groups the same dry run by run: one run with its four jobs, and the tables
    assert by_run(sorted(job for job in jobs if job[1])) == {
        "tiny/bon/mix/seed-0": {"generate": 1, "score": 1, "merge": 1, "evaluate": 1, "credit": 1},
        WHOLE_GRID: {"aggregate": 1, "optimal": 1, "plot": 1},
    }
    assert jobs == {
        ("generate", f"{bon}/shards/0-4/completions.parquet"),
        ("score", f"{bon}/shards/0-4/scores/tiny-judge.parquet"),
        ("merge", f"{bon}/merged/tiny-judge.parquet"),
        ("evaluate", f"{bon}/metrics/tiny-judge.parquet"),
        ("credit", f"{bon}/credit/tiny-judge.parquet"),
        ("aggregate", "results/wf/accuracy.csv"),
        ("optimal", "results/wf/optimal/tiny.csv"),
        ("plot", f"results/wf/plots/{plot_files(['tiny'])[0]}"),
        ("all", ""),
    }
