"""Hostile inputs get one line and execute nothing: a push repo that is not a Hub name, a dataset file
with a broken, huge or NUL-holding line, a merged file with a repeated or absent problem id, a YAML
alias bomb given to `sal with-servers --config`; paths with spaces, quotes, `$(...)`, backticks and
non-ASCII run the workflow correctly, started as `.venv/bin/python -m snakemake` without an activated
environment (the jobs run the `sal` next to that Python)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import REPO, new_workdir, snakemake, workflow_config

from sal_core.cli import main
from sal_core.errors import ConfigError, DatasetError
from sal_core.executable import put_sal_on_path
from sal_core.pipeline.prepare_dataset import MAX_LINE_BYTES, load_problems
from sal_core.settings.check import check_config
from sal_core.settings.dataset import DatasetSettings

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
HOSTILE = "we ird 'q\" $(touch PWNED1) `touch PWNED2` ; é ü"


@pytest.mark.parametrize("repo", ["user/x; touch PWNED", "user/$(id)", "-rf /", "user/a b", "user/`id`", "x"])
def test_push_repo_must_be_a_hub_name(repo: str) -> None:
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["push"] = {"enabled": True, "repo": repo}
    with pytest.raises(ConfigError, match=r"^push\.repo: .*does not match") as err:
        check_config(config, SCHEMA)
    assert "\n" not in str(err.value)
    config["push"]["repo"] = "user/sal-results_v1.2"
    check_config(config, SCHEMA)


def dataset(tmp_path: Path, lines: list[bytes]) -> DatasetSettings:
    path = tmp_path / "set.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return DatasetSettings(name="d", source="local", path=str(path))


GOOD = b'{"problem": "1+1?", "answer": "2"}'


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"problem": "1+1?", "answer": ', "not JSON"),
        (b'{"problem": "' + b"x" * MAX_LINE_BYTES + b'", "answer": "1"}', f"longer than {MAX_LINE_BYTES} bytes"),
        (b'{"problem": "1+\x001?", "answer": "2"}', "holds a NUL character"),
        (b'{"problem": "1+\\u00001?", "answer": "2"}', "holds a NUL character"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe{}", "not JSON"),
    ],
)
def test_a_broken_dataset_line_is_named_by_file_and_line(tmp_path: Path, bad: bytes, reason: str) -> None:
    settings = dataset(tmp_path, [GOOD, GOOD, bad, GOOD])
    with pytest.raises(DatasetError) as err:
        load_problems(settings)
    message = str(err.value)
    assert message.startswith(f"dataset.path: {settings.path} line 3: {reason}") and "\n" not in message
    assert len(message) < 400


def test_a_good_jsonl_dataset_reads_as_before(tmp_path: Path) -> None:
    rows = [{"problem": "1+1?", "answer": "2", "level": 1}, {"problem": "é?", "answer": 3, "extra": [1]}]
    settings = dataset(tmp_path, [json.dumps(row).encode() for row in rows] + [b""])
    expected = pd.read_json(settings.path, lines=True, dtype=False)
    assert load_problems(settings).equals(load_problems(settings))
    assert list(expected.columns) == ["problem", "answer", "level", "extra"]
    assert load_problems(settings)["answer"].to_list() == ["2", "3"]


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["a", "b", "a"], "problem 'a' appears more than once"),
        (["a", None, "c"], "row 1 has no problem_id"),
        (["a", " ", "c"], "row 1 has no problem_id"),
    ],
)
def test_evaluate_refuses_repeated_or_absent_problem_ids(tmp_path: Path, capsys, ids: list, words: str) -> None:
    merged = tmp_path / "merged.jsonl"
    rows = [{"problem_id": i, "answer": "2", "completions": ["\\boxed{2}"], "scores": [[0.5]]} for i in ids]
    merged.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["evaluate", "--merged", str(merged), "--out", str(tmp_path / "m.parquet")]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err == [f"sal evaluate: error: {merged}: {words}"]
    assert not (tmp_path / "m.parquet").exists()


def alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_with_servers_refuses_a_yaml_alias_bomb_quickly(tmp_path: Path, tiny_model_path: Path, capsys) -> None:
    model = {"path": str(tiny_model_path), "device": "cpu", "system_prompt": "BOMB"}
    text = alias_bomb() + yaml.safe_dump({"models": {"tiny": model}}).replace("'BOMB'", "*a8").replace("BOMB", "*a8")
    (tmp_path / "bomb.yaml").write_text(text)
    started = time.monotonic()
    code = main(["with-servers", "--config", str(tmp_path / "bomb.yaml"), "--serve", "tiny", "--", "true"])
    assert code == 2 and time.monotonic() - started < 5
    assert "through its aliases (refused)" in capsys.readouterr().err
    (tmp_path / "fine.yaml").write_text("base: &base {device: cpu}\nmodels:\n  tiny: {<<: *base, path: x}\n")
    assert main(["with-servers", "--config", str(tmp_path / "fine.yaml"), "--serve", "tiny", "--", "true"]) == 2
    assert "models.tiny.path: x is neither" in capsys.readouterr().err  # read past the anchor and merge key


def test_without_sal_anywhere_the_workflow_stops_with_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ConfigError, match=r"`sal` is neither next to .* nor on PATH: activate"):
        put_sal_on_path({"PATH": str(tmp_path)})
    environ = {"PATH": "/usr/bin:/bin"}
    monkeypatch.undo()
    assert put_sal_on_path(environ) == str(Path(sys.executable).parent / "sal")
    assert environ["PATH"] == f"{Path(sys.executable).parent}:/usr/bin:/bin"


@pytest.mark.slow
def test_hostile_paths_run_correctly_without_an_activated_environment(tmp_path: Path, tiny_model_path: Path) -> None:
    """Model folder and dataset file under a folder named with spaces, quotes, $(...), backticks and
    non-ASCII; Snakemake started by the venv's Python with a PATH that has no `sal`."""
    hostile = tmp_path / HOSTILE
    (hostile / "model").parent.mkdir(parents=True)
    data = hostile / "problems é.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(2)))
    config = workflow_config()
    config["dataset"].update(source="local", path=str(data), limit=2, shard_size=2)
    config["approaches"] = {"bon": config["approaches"]["bon"]}
    config["models"]["tiny"] = {**{k: v for k, v in config["models"]["tiny"].items() if k != "prepare"}}
    config["models"]["tiny"]["path"] = str(hostile / "model")
    config["prms"]["tiny-judge"] = {k: v for k, v in config["prms"]["tiny-judge"].items() if k != "prepare"}
    config["prms"]["tiny-judge"]["path"] = str(hostile / "model")
    import shutil

    shutil.copytree(tiny_model_path, hostile / "model")
    workdir = new_workdir(hostile / "work", config, tiny_model_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    snakemake(workdir, env=env)
    accuracy = pd.read_csv(workdir / "results" / "wf" / "accuracy.csv")
    assert len(accuracy) > 0
    assert not [p for p in tmp_path.rglob("PWNED*")] and not list(REPO.glob("PWNED*"))
