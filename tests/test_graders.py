"""Graders side by side (issue 21): every grader on every completion in one evaluate job, a column per
grader in the metrics and the accuracy table, the disagreement files; at [default] nothing changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_evaluation import boxed, toy_rows
from workflow_runs import REPO, RUN, planned_jobs, snakemake, workflow_config, write_config

from sal_core.cli import main
from sal_core.errors import ConfigError
from sal_core.evaluation.aggregate import aggregate_runs
from sal_core.evaluation.protocols import evaluation_graders, grader_flag

CONFIGS = sorted((REPO / "config").glob("*.yaml")) + sorted((REPO / "config" / "experiments").glob("*.yaml"))
GRADERS = "default,sal,math-verify"


def test_grader_lists_are_checked_in_one_line() -> None:
    assert evaluation_graders({}) == ["default"] and grader_flag({}) == ""
    assert grader_flag({"graders": ["default"]}) == ""  # the default spelled out: the same jobs
    assert grader_flag({"graders": ["default", "sal"]}) == " --graders default,sal"
    with pytest.raises(ConfigError, match=r"evaluation\.graders: 'hnc' is not one of default, sal, math-verify"):
        evaluation_graders({"graders": ["default", "hnc"]})
    with pytest.raises(ConfigError, match=r"evaluation\.graders: a list of distinct graders"):
        evaluation_graders({"graders": ["sal", "sal"]})
    with pytest.raises(ConfigError, match=r"evaluation\.graders: needs the default protocol first, not 'sal'"):
        evaluation_graders({"protocol": "sal", "graders": ["default", "sal"]})


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_upgrading_adds_no_grader_flag(path: Path) -> None:
    """Every shipped config stays at [default]: its evaluate jobs keep their command and outputs."""
    assert grader_flag(yaml.safe_load(path.read_text()).get("evaluation", {})) == ""


def _toy(tmp_path: Path) -> Path:
    rows = toy_rows()
    texts = ["So it is \\boxed{2<sup>10</sup>}.", "The final answer is 1024.", "So 2<sup>10</sup>.", boxed("1000")]
    rows.append({**rows[1], "problem_id": "c", "answer": "1024", "completions": texts})
    path = tmp_path / "merged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evaluate(merged: Path, out: Path, *flags: str) -> pd.DataFrame:
    args = ["evaluate", "--merged", str(merged), "--out", str(out), "--workers", "1", "--no-progress", *flags]
    assert main([*args, "--num-subsamples", "16", "--model", "m"]) == 0
    return pd.read_parquet(out)


def test_three_graders_in_one_pass_with_their_audit_files(tmp_path: Path) -> None:
    merged = _toy(tmp_path)
    alone = _evaluate(merged, tmp_path / "alone.parquet")
    rows = _evaluate(merged, tmp_path / "m.parquet", "--graders", GRADERS, "--grader-files", str(tmp_path / "g/run"))
    # the first grader drives the metrics exactly as it alone does; each grader adds its column
    pd.testing.assert_frame_equal(rows[alone.columns], alone)
    assert (rows["accuracy_default"] == rows["accuracy"]).all()
    at = rows[rows["level"] == "all"].set_index(["n", "vote"])
    assert at.loc[(4, "pass@k"), "accuracy_sal"] == 1.0 and at.loc[(4, "majority"), "accuracy_default"] == 1.0
    # problem c: ours reads both HTML exponents, search-and-learn's and math-verify's graders neither
    grades = pd.read_parquet(tmp_path / "g/run.grades.parquet").set_index("problem_id")
    assert grades.loc["c", "correct_default"].tolist() == [True, True, True, False]
    assert grades.loc["c", "correct_sal"].tolist() == [False, True, False, False]
    assert grades.loc["c", "correct_math_verify"].tolist() == [False, True, False, False]
    disputed = pd.read_csv(tmp_path / "g/run.disagreements.csv")
    assert disputed[["problem_id", "completion"]].values.tolist() == [["c", 0], ["c", 2]]
    assert disputed["gold"].astype(str).tolist() == ["1024", "1024"]
    assert disputed["answer_default"].tolist() == ["2<sup>10</sup>", "2^10."]
    assert disputed["answer_math_verify"].astype(str).tolist() == ["2<sup>10</sup>", "2"]
    table = pd.read_csv(tmp_path / "g/run.accuracy.csv")
    assert {"accuracy_default", "accuracy_sal", "accuracy_math_verify", "spread"} <= set(table.columns)
    assert (tmp_path / "g/run.png").stat().st_size > 1000
    # the accuracy table gains one column per grader
    accuracy, _ = aggregate_runs([tmp_path / "m.parquet"], tmp_path / "accuracy.csv", None, progress=False)
    assert {"accuracy_default", "accuracy_sal", "accuracy_math_verify"} <= set(accuracy.columns)


def test_graders_refuse_the_sal_protocol(tmp_path: Path, capsys) -> None:
    args = ["evaluate", "--merged", str(_toy(tmp_path)), "--out", str(tmp_path / "m.parquet"), "--protocol", "sal"]
    assert main([*args, "--graders", "default,sal"]) != 0
    assert "--graders: only with --protocol default" in capsys.readouterr().err
    assert main([*args[:-2], "--graders", "default,hnc"]) != 0
    assert "--graders: 'hnc' is not one of default, sal, math-verify" in capsys.readouterr().err


@pytest.mark.slow
def test_two_graders_in_a_finished_grid_rerun_only_evaluation(finished_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "copy"
    shutil.copytree(finished_run, workdir, symlinks=True)
    config = workflow_config()
    config.setdefault("evaluation", {})["graders"] = ["default", "sal"]
    write_config(workdir, config)
    runs = [RUN.format(approach=a, sampling="mix") for a in ("bon", "beam-n2.tiny-judge", "dvts.tiny-judge")]
    jobs = planned_jobs(workdir)
    assert {job for job in jobs if job[0] == "evaluate"} == {
        ("evaluate", f"{r}/metrics/tiny-judge.parquet") for r in runs
    }
    assert {rule for rule, _ in jobs} <= {"evaluate", "aggregate", "plot", "all"}
    snakemake(workdir)
    for run in runs:
        metrics = pd.read_parquet(workdir / run / "metrics/tiny-judge.parquet")
        assert {"accuracy_default", "accuracy_sal"} <= set(metrics.columns)
        for suffix in (".grades.parquet", ".accuracy.csv", ".disagreements.csv", ".png"):
            assert (workdir / run / f"graders/tiny-judge{suffix}").exists()
    assert "accuracy_sal" in pd.read_csv(workdir / "results/wf/accuracy.csv").columns
    assert planned_jobs(workdir) == set()
    report = snakemake(workdir, "--report", str(workdir / "report.zip"))
    assert report.returncode == 0 and (workdir / "report.zip").stat().st_size > 0
