"""The compute-optimal rules in the workflow: the shared finished run (4 problems: too few for bins)
says so in one line and writes the rest, and adding the analysis to a grid finished without it runs
only its own jobs (credit per run, optimal per model), never a finished evaluate job."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from workflow_runs import planned_jobs


def test_too_few_problems_is_one_line_and_the_rest_is_written(finished_run: Path) -> None:
    table = finished_run / "results/wf/optimal/tiny.csv"
    assert pd.read_csv(table).empty and "cv_accuracy" in table.read_text()
    assert (finished_run / "results/wf/optimal/tiny.png").stat().st_size > 1000
    log = (finished_run / "logs/wf/optimal.tiny.log").read_text()
    assert sum("too few for 5 difficulty bins" in line for line in log.splitlines()) == 1
    assert "evaluation.optimal.bins" in log
    assert (finished_run / "results/wf/accuracy.csv").exists()


def test_adding_the_analysis_to_a_finished_grid_reruns_no_evaluate_job(finished_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "copy"
    shutil.copytree(finished_run, workdir, symlinks=True)  # copy2 keeps mtimes
    for folder in (workdir / "results").glob("wf/**/credit"):
        shutil.rmtree(folder)
    shutil.rmtree(workdir / "results/wf/optimal")
    rules = {rule for rule, _ in planned_jobs(workdir)}
    assert rules == {"credit", "optimal", "all"}
