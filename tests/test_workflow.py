"""The Snakemake workflow end to end on a tiny random model, driven through Snakemake's CLI.

One full run is shared by the session (`finished_run` in conftest.py, copied per test that changes
files): the dry runs after a deleted shard or a changed parameter must list exactly the jobs that
depend on it, and a corrupt shard must be recomputed alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow_runs import RUN, SNAKEFILE, digest, planned_jobs, snakemake, workflow_config, write_config

from sal_core.paths import plot_files


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "copy"
    shutil.copytree(finished_run, workdir, symlinks=True)  # copy2 keeps mtimes
    return workdir


def test_full_run_writes_tables_plots_and_then_has_nothing_left(finished_run: Path) -> None:
    table = pd.read_csv(finished_run / "results/wf/accuracy.csv")
    assert set(table["approach"]) == {"bon", "beam", "dvts"}
    assert {"majority", "naive", "weighted"} <= set(table["vote"])
    assert table["accuracy"].between(0, 1).all()
    for path in plot_files(["tiny"]):
        assert (finished_run / f"results/wf/plots/{path}").stat().st_size > 1000
    merged = pd.read_parquet(finished_run / RUN.format(approach="bon", sampling="mix") / "merged/tiny-judge.parquet")
    assert len(merged) == 4 and all(len(c) == 4 for c in merged["completions"])
    assert all(sorted(t) == [0.5, 1.0, 1.0, 1.0] for t in merged["temperatures"])  # ratios 0.25 / 0.75 of n=4
    assert planned_jobs(finished_run) == set()


def test_run_prints_one_line_per_job_and_each_log_starts_with_its_command(finished_run: Path) -> None:
    out = (finished_run / "snakemake.out").read_text()
    assert '{"' not in out  # no job settings: they are in the logs
    jobs = re.findall(r"^Job \d+: (\w+) (\S+)$", out, re.M)
    assert len(jobs) == 24 == len(set(jobs))  # 3 runs x (2 generate + 2 score + merge + evaluate + credit) + 3
    assert ("generate", RUN.format(approach="bon", sampling="mix") + "/shards/0-2/completions.parquet") in jobs
    assert re.search(r"^24 of 25 steps \(96%\) done$", out, re.M)
    log = finished_run / "logs/wf/tiny/bon/mix/seed-0/generate/0-2.log"
    command = log.read_text().splitlines()[0]
    assert "INFO sal: command: sal generate --problems results/wf/problems.parquet --start 0 --end 2" in command
    assert '"method":"best_of_n"' in command


def test_missing_work_is_summarised_by_run(run_copy: Path) -> None:
    run = RUN.format(approach="dvts.tiny-judge", sampling="mix")
    shutil.rmtree(run_copy / run / "shards/2-4")
    args = ["-s", str(SNAKEFILE), "-d", str(run_copy), "--configfile", str(run_copy / "config.yaml")]
    result = subprocess.run(
        [sys.executable, "-m", "sal_core.cli", "missing", "--", *args], capture_output=True, text=True, check=True
    )
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["tiny/dvts.tiny-judge/mix/seed-0"] == ["1"] * 5  # generate, score, merge, evaluate, credit
    assert rows["(whole"] == ["grid)", "1", "1", "1"]  # aggregate, optimal, plot
    assert "1 run(s) with missing work, 8 job(s)" in result.stdout


def test_deleted_shard_dry_run_lists_exactly_its_dependents(run_copy: Path) -> None:
    run = RUN.format(approach="dvts.tiny-judge", sampling="mix")
    shutil.rmtree(run_copy / run / "shards/2-4")  # the shard: its completions and scores
    assert planned_jobs(run_copy) == {
        ("generate", f"{run}/shards/2-4/completions.parquet"),
        ("score", f"{run}/shards/2-4/scores/tiny-judge.parquet"),
        ("merge", f"{run}/merged/tiny-judge.parquet"),
        ("evaluate", f"{run}/metrics/tiny-judge.parquet"),
        ("credit", f"{run}/credit/tiny-judge.parquet"),
        ("optimal", "results/wf/optimal/tiny.csv"),
        ("aggregate", "results/wf/accuracy.csv"),
        ("plot", f"results/wf/plots/{plot_files(['tiny'])[0]}"),
        ("all", ""),
    }


def test_changed_search_parameter_reruns_only_that_approach(run_copy: Path) -> None:
    config = workflow_config()
    config["approaches"]["bon"]["max_tokens"] = 20
    write_config(run_copy, config)
    jobs = planned_jobs(run_copy)
    run = RUN.format(approach="bon", sampling="mix")
    assert {(rule, out) for rule, out in jobs if rule in ("generate", "score")} == {
        ("generate", f"{run}/shards/0-2/completions.parquet"),
        ("generate", f"{run}/shards/2-4/completions.parquet"),
        ("score", f"{run}/shards/0-2/scores/tiny-judge.parquet"),
        ("score", f"{run}/shards/2-4/scores/tiny-judge.parquet"),
    }
    rules = {"generate", "score", "merge", "evaluate", "credit", "optimal", "aggregate", "plot", "all"}
    assert {rule for rule, _ in jobs} == rules
    assert all("beam" not in out and "dvts" not in out for _, out in jobs)


def test_corrupt_shard_is_recomputed_alone(run_copy: Path) -> None:
    run = run_copy / RUN.format(approach="bon", sampling="mix")
    corrupt = run / "shards/0-2/completions.parquet"
    intact = run / "shards/2-4/completions.parquet"
    intact_state = (digest(intact), intact.stat().st_mtime_ns)
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    failed = snakemake(run_copy, check=False)
    assert failed.returncode != 0
    assert "unreadable or corrupt" in failed.stdout + failed.stderr
    assert (run / "shards/0-2/completions.parquet.corrupt").exists()
    assert not corrupt.exists()
    snakemake(run_copy)
    assert pd.read_parquet(corrupt)["problem_id"].tolist() == ["easy/00", "easy/01"]
    assert (digest(intact), intact.stat().st_mtime_ns) == intact_state
    assert planned_jobs(run_copy) == set()


def test_bad_config_fails_before_any_job(tmp_path: Path) -> None:
    config = workflow_config()
    config["approaches"]["beam"]["n"] = [3]
    write_config(tmp_path, config)
    result = snakemake(tmp_path, check=False)
    assert result.returncode != 0
    assert "invalid configuration: approaches.beam.n: 3 is not a multiple of beam_width 2" in result.stderr
    assert not (tmp_path / "results").exists()


def test_dataset_without_the_answer_field_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"problem": "1+1?", "solution": "2"}\n')
    config = workflow_config()
    config["dataset"] = {"name": "wf", "source": "local", "path": str(tmp_path / "d.jsonl")}
    write_config(tmp_path, config)
    result = snakemake(tmp_path, check=False)
    assert result.returncode != 0
    assert "no column 'answer' for dataset.fields.answer" in result.stderr
    assert not (tmp_path / "results").exists()
