"""What the Snakefile gets from sal_core.plan (targets of `all`, shard inputs) and how `sal missing`
groups a dry run by run. The workflow end to end is in test_workflow.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from sal_core import paths
from sal_core.missing import WHOLE_GRID, by_run, format_table, planned_jobs
from sal_core.plan import Plan
from sal_core.settings.check import check_config

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SHARDS = [(0, 2), (2, 4)]  # the smoke dataset: 4 problems in shards of 2


def smoke_plan() -> Plan:
    return Plan(check_config(yaml.safe_load((REPO / "config" / "smoke.yaml").read_text()), SCHEMA), SHARDS[-1][1])


def test_fresh_grid_names_no_shard_and_finished_grid_names_only_missing_ones() -> None:
    plan = smoke_plan()
    every_shard = [path for run in plan.grid.runs for path in plan.shard_files(run)]
    assert len(every_shard) == 8 * 2 * 2  # runs x shards x (completions + one scores file)
    assert plan.missing_shard_targets(exists=lambda path: False) == []  # the chain asks for them all
    present = set(every_shard) | {paths.ACCURACY.format(dataset="smoke")}
    assert plan.missing_shard_targets(exists=present.__contains__) == []
    lost = every_shard[5]
    assert plan.missing_shard_targets(exists=(present - {lost}).__contains__) == [lost]


def test_a_merged_run_names_its_missing_shards_before_any_table_exists() -> None:
    plan = smoke_plan()
    run = plan.grid.runs[0]
    merged = paths.MERGED.format(prm=plan.grid.score_prms[0], **plan.run_wildcards(run))
    assert plan.missing_shard_targets(exists={merged}.__contains__) == plan.shard_files(run)


def test_merge_inputs_are_templates_of_every_shard() -> None:
    templates = smoke_plan().shard_templates(paths.SCORES)
    assert templates == [paths.SCORES.replace("{start}-{end}", f"{s}-{e}") for s, e in SHARDS]
    assert all("{model}" in template and "{prm}" in template for template in templates)


def test_missing_work_is_grouped_by_run() -> None:
    dry_run = "\n".join(
        [
            "Job 3: generate results/d/m/bon/t0.8/seed-1/shards/0-25/completions.parquet",
            "Job 4: score results/d/m/bon/t0.8/seed-1/shards/0-25/scores/p.parquet",
            "Job 5: generate results/d/m/beam-n4.p/t0.8/seed-0/shards/25-50/completions.parquet",
            "Reason: something",
            "Job 9: aggregate results/d/accuracy.csv",
        ]
    )
    counts = by_run(planned_jobs(dry_run))
    assert list(counts) == ["m/beam-n4.p/t0.8/seed-0", "m/bon/t0.8/seed-1", WHOLE_GRID]
    assert counts["m/bon/t0.8/seed-1"] == {"generate": 1, "score": 1}
    table = format_table(counts)
    assert table.splitlines()[0].split() == ["run", "generate", "score", "aggregate"]
    assert table.endswith("2 run(s) with missing work, 4 job(s)")
    assert format_table({}) == "Nothing to be done: no job is missing."
