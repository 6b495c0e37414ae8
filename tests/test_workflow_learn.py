"""The learn loop through Snakemake's CLI on the tiny random model (config/smoke_learn.yaml): a labels
entry samples and labels a training pool, train_prm trains a PRM on it, ProcessBench benchmarks it
beside the untrained judge, and the held-out problems are searched (beam search guided by the trained
PRM) and scored by both. One full run is shared by the module; the dry runs after a changed setting
must list exactly the jobs that depend on it, a killed training job must resume from its checkpoint
on the rerun, and the ProcessBench chart must be in the report. About three minutes on two cores: slow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from workflow_runs import REPO, SNAKEFILE, new_workdir, planned_jobs, snakemake, write_config

from sal_core import paths

pytestmark = pytest.mark.slow

CONFIG = REPO / "config" / "smoke_learn.yaml"
RESULTS = "results/smoke-learn"
RUN = RESULTS + "/tiny/{run}/t1.0/seed-0"
BON, BEAM = RUN.format(run="bon"), RUN.format(run="beam-n2.tiny-prm")
PRM = paths.trained_prm("tiny-prm")
STEPS = paths.LABEL_STEPS.format(labels="pool", start=0, end=4)


def learn_config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def finished_loop(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Path:
    workdir = new_workdir(tmp_path_factory.mktemp("learn"), learn_config(), tiny_model_path)
    snakemake(workdir)
    return workdir


@pytest.fixture
def loop_copy(finished_loop: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "copy"
    shutil.copytree(finished_loop, workdir, symlinks=True)  # copy2 keeps mtimes
    return workdir


def _after_training() -> set[tuple[str, str]]:
    """The jobs that read the trained PRM, directly or through what it guided, and everything after."""
    first_plot = f"{RESULTS}/plots/tiny/{paths.plot_files(['tiny'])[0].split('/', 1)[1]}"
    jobs = {("train_prm", PRM), ("generate", f"{BEAM}/shards/0-4/completions.parquet")}
    for run, prms in ((BEAM, ("tiny-judge", "tiny-prm")), (BON, ("tiny-prm",))):
        for prm in prms:
            jobs |= {
                ("score", f"{run}/shards/0-4/scores/{prm}.parquet"),
                ("merge", f"{run}/merged/{prm}.parquet"),
                ("evaluate", f"{run}/metrics/{prm}.parquet"),
                ("credit", f"{run}/credit/{prm}.parquet"),
            }
    jobs |= {
        ("aggregate", f"{RESULTS}/accuracy.csv"),
        ("optimal", f"{RESULTS}/optimal/tiny.csv"),
        ("plot", first_plot),
        ("processbench", paths.PROCESSBENCH_TABLE.format(prm="tiny-prm")),
        ("processbench_plot", paths.PROCESSBENCH_PLOT),
        ("all", ""),
    }
    return jobs


def test_the_loop_labels_trains_benchmarks_and_searches_with_the_trained_prm(finished_loop: Path) -> None:
    steps = pd.read_parquet(finished_loop / STEPS)
    assert len(steps) == 4 * 2  # 4 problems x n=2, every completion has a step
    record = json.loads((finished_loop / PRM / "prm_config.json").read_text())
    assert record["settings"]["dataset"] == STEPS and record["global_step"] == 2  # one shard: one file
    assert record["settings"]["base_model"] == paths.prepared_model("tiny-random")
    for prm in ("tiny-judge", "tiny-prm"):
        table = pd.read_csv(finished_loop / paths.PROCESSBENCH_TABLE.format(prm=prm))
        assert list(table["split"]) == ["gsm8k", "average"] and set(table["prm"]) == {prm}
        assert (table["n_error"] + table["n_correct"]).iloc[0] == 2
    assert (finished_loop / paths.PROCESSBENCH_PLOT).stat().st_size > 1000
    accuracy = pd.read_csv(finished_loop / f"{RESULTS}/accuracy.csv")
    assert set(zip(accuracy["approach"], accuracy["prm"], strict=True)) == {
        ("bon", "tiny-judge"),
        ("bon", "tiny-prm"),
        ("beam", "tiny-judge"),
        ("beam", "tiny-prm"),
    }
    assert not (finished_loop / paths.TRAIN_CHECKPOINTS.format(out=PRM)).exists(), "a finished run drops them"
    assert planned_jobs(finished_loop) == set()


@pytest.mark.parametrize(
    ("change", "rules_before_training"),
    [
        (lambda c: c["prms"]["tiny-prm"]["train"].update(learning_rate=2e-3), set()),
        (lambda c: c["labels"]["pool"].update(k=2), {("label_steps", STEPS)}),
    ],
    ids=["training setting", "labelling setting"],
)
def test_a_changed_learn_setting_reruns_exactly_what_depends_on_it(loop_copy, change, rules_before_training) -> None:
    config = learn_config()
    change(config)
    write_config(loop_copy, config)
    assert planned_jobs(loop_copy) == rules_before_training | _after_training()


def test_changed_processbench_settings_rerun_only_processbench(loop_copy: Path) -> None:
    config = learn_config()
    config["processbench"]["threshold"] = 0.3
    write_config(loop_copy, config)
    assert planned_jobs(loop_copy) == {
        ("processbench", paths.PROCESSBENCH_TABLE.format(prm="tiny-judge")),
        ("processbench", paths.PROCESSBENCH_TABLE.format(prm="tiny-prm")),
        ("processbench_plot", paths.PROCESSBENCH_PLOT),
        ("all", ""),
    }


def _kill_training_after_a_checkpoint(workdir: Path) -> subprocess.CompletedProcess:
    """Run the train_prm job and SIGKILL its training process once a checkpoint is complete."""
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), PRM]
    command += ["--configfile", str(workdir / "config.yaml"), "--cores", "1"]
    checkpoints = workdir / paths.TRAIN_CHECKPOINTS.format(out=PRM)
    with subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        deadline = time.monotonic() + 300
        while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
            assert run.poll() is None and time.monotonic() < deadline, "training ended before any checkpoint"
            time.sleep(0.05)
        for child in psutil.Process(run.pid).children(recursive=True):
            if "train-prm" in child.cmdline():  # the Python process; its shell is no parent to wait on
                child.kill()
        output, _ = run.communicate(timeout=120)
    return subprocess.CompletedProcess(command, run.returncode, output)


def test_a_killed_training_job_resumes_from_its_checkpoint_on_the_rerun(loop_copy: Path) -> None:
    config = learn_config()
    config["prms"]["tiny-prm"]["train"].update(max_steps=30, save_steps=2, save_total_limit=1)
    write_config(loop_copy, config)
    killed = _kill_training_after_a_checkpoint(loop_copy)
    assert killed.returncode != 0, killed.stdout[-2000:]
    assert not (loop_copy / PRM).exists(), "the failed job's output is gone"
    checkpoints = loop_copy / paths.TRAIN_CHECKPOINTS.format(out=PRM)
    survived = sorted(checkpoints.glob("checkpoint-*"))
    assert survived, "Snakemake's clean-up of the failed job must leave the checkpoints"
    snakemake(loop_copy, PRM)
    record = json.loads((loop_copy / PRM / "prm_config.json").read_text())
    assert record["resumed_from"] is not None and Path(record["resumed_from"]).name.startswith("checkpoint-")
    assert int(record["resumed_from"].rsplit("-", 1)[1]) >= 2 and record["global_step"] == 30


def test_the_processbench_chart_is_in_the_report(finished_loop: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.zip"
    snakemake(finished_loop, "--report", str(report))
    shutil.unpack_archive(report, tmp_path / "report")
    names = [p.name for p in (tmp_path / "report").rglob("*")]
    assert "processbench.png" in names and "tiny-prm.csv" in names


def test_training_on_several_gpus_is_launched_by_accelerate(loop_copy: Path) -> None:
    config = learn_config()
    config["prms"]["tiny-prm"]["train"]["max_steps"] = 3
    write_config(loop_copy, config)
    result = snakemake(loop_copy, PRM, "-n", "-p", "--set-resources", "train_prm:gpu=2")
    command = "accelerate launch --multi_gpu --num_processes 2 -m sal_core.cli train-prm --config"
    assert command in result.stdout + result.stderr
