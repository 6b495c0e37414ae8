"""`sal train-prm` on the tiny model: the loss goes down, the PRM learns where labels are, the folder
loads through `type: trl` with its separator, LoRA is merged exactly, and an interrupted run resumes
from its checkpoint (the global step continues) while a run with other settings starts over."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import AutoModelForTokenClassification, TrainerCallback

from sal_core.cli import main
from sal_core.learn.train_prm import SETTINGS_FILE, TrainSettings, checkpoint_to_resume, train_prm
from sal_core.prm import load_prm
from sal_core.settings.jobs import PRMSettings

GOOD, BAD = "This step is fine.", "Oops, this step is wrong."


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows whose step labels follow the step's words: learnable by a tiny model in a few steps."""
    rng = random.Random(0)
    rows = []
    for i in range(48):
        labels = [rng.random() < 0.5 for _ in range(rng.randint(1, 4))]
        steps = [f"{GOOD if ok else BAD} ({k})" for k, ok in enumerate(labels)]
        rows.append({"prompt": f"Problem {i}: what is {i} + {i}?", "completions": steps, "labels": labels})
    path = tmp_path_factory.mktemp("data") / "toy.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return path


def _settings(tiny_model_path: Path, dataset: Path, **overrides) -> TrainSettings:
    base = dict(
        base_model=str(tiny_model_path),
        dataset=str(dataset),
        max_steps=24,
        batch_size=8,
        learning_rate=3e-3,
        logging_steps=1,
        save_steps=100,
    )
    return TrainSettings(**{**base, **overrides})


class StopAt(TrainerCallback):
    """Dies like a killed job right after optimizer step `step` (the work since the last checkpoint is lost)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


class CountSteps(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_loss_goes_down_and_the_prm_loads_through_type_trl(tiny_model_path, toy_dataset, tmp_path) -> None:
    out = tmp_path / "prm"
    result = train_prm(_settings(tiny_model_path, toy_dataset), out)
    losses = [row["loss"] for row in result.losses]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4
    logged = pd.read_csv(out / "loss_log.csv")
    assert logged["step"].tolist() == list(range(1, 25))
    assert json.loads((out / "prm_config.json").read_text())["step_separator"] == "\n\n"
    assert not (tmp_path / "prm.checkpoints").exists()
    prm = load_prm(PRMSettings(name="trained", type="trl", path=str(out), device="cpu"))
    assert prm.step_separator == "\n\n"
    scores = prm.score(["Problem 99: what is 99 + 99?"], [[f"{GOOD} (0)\n\n{BAD} (1)\n\n{GOOD} (2)"]])[0][0]
    assert len(scores) == 3
    assert scores[0] > 0.5 > scores[1] and scores[2] > 0.5, scores


def test_lora_is_merged_into_the_saved_weights(tiny_model_path, toy_dataset, tmp_path) -> None:
    probe = torch.tensor([[1, 520, 33, 1116, 2851, 1116]])
    seen: dict[str, torch.Tensor] = {}

    class Probe(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                seen["logits"] = model.eval()(input_ids=probe).logits

    out = tmp_path / "lora"
    train_prm(_settings(tiny_model_path, toy_dataset, max_steps=4, lora_r=4), out, callbacks=[Probe()])
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForTokenClassification.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=probe).logits, seen["logits"], atol=1e-4)


def test_freeze_base_trains_the_head_alone(tiny_model_path, toy_dataset, tmp_path) -> None:
    out = tmp_path / "probe"
    result = train_prm(_settings(tiny_model_path, toy_dataset, max_steps=4, freeze_base=True), out)
    assert result.global_step == 4
    base = AutoModelForTokenClassification.from_pretrained(tiny_model_path, num_labels=2).state_dict()
    trained = AutoModelForTokenClassification.from_pretrained(out).state_dict()
    frozen = [k for k in base if not k.startswith("score.")]
    assert frozen and all(torch.equal(trained[k], base[k]) for k in frozen)


def test_interrupted_training_resumes_from_its_checkpoint(tiny_model_path, toy_dataset, tmp_path) -> None:
    settings = _settings(tiny_model_path, toy_dataset, max_steps=6, save_steps=2)
    out = tmp_path / "prm"
    with pytest.raises(KeyboardInterrupt):
        train_prm(settings, out, callbacks=[StopAt(5)])
    assert not out.exists(), "a killed run must not leave a folder that looks done"
    assert sorted(p.name for p in (tmp_path / "prm.checkpoints").glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    counter = CountSteps()
    result = train_prm(settings, out, callbacks=[counter])
    assert result.resumed_from.endswith("checkpoint-4")
    assert counter.steps == [5, 6]
    assert result.global_step == 6
    assert [row["step"] for row in result.losses] == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "prm_config.json").read_text())["resumed_from"].endswith("checkpoint-4")


def test_checkpoints_of_other_settings_or_half_written_are_dropped(tmp_path, toy_dataset) -> None:
    checkpoints = tmp_path / "prm.checkpoints"
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    settings = TrainSettings(base_model="m", dataset=str(toy_dataset))
    (checkpoints / SETTINGS_FILE).write_text(json.dumps(settings.fingerprint(), sort_keys=True))
    assert checkpoint_to_resume(checkpoints, settings.fingerprint()).endswith("checkpoint-4")
    assert not (checkpoints / "checkpoint-6").exists()
    other = TrainSettings(base_model="m", dataset=str(toy_dataset), learning_rate=2e-5)
    assert checkpoint_to_resume(checkpoints, other.fingerprint()) is None
    assert list(checkpoints.glob("checkpoint-*")) == []
    # operational settings (how often to log or save) do not invalidate checkpoints
    assert TrainSettings(base_model="m", dataset=str(toy_dataset), save_steps=7).fingerprint() == settings.fingerprint()


def test_cli_names_a_missing_dataset_before_loading_a_model(tmp_path, toy_dataset, capsys) -> None:
    code = main(
        [
            "train-prm",
            "--base-model",
            str(tmp_path / "no-model"),
            "--dataset",
            str(tmp_path / "nope.jsonl"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err
    code = main(
        [
            "train-prm",
            "--base-model",
            str(tmp_path / "no-model"),
            "--dataset",
            str(toy_dataset),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "no-model" in capsys.readouterr().err


def test_cli_reads_config_json_and_flags_win(tiny_model_path, toy_dataset, tmp_path) -> None:
    config = {
        "base_model": str(tiny_model_path),
        "dataset": str(toy_dataset),
        "max_steps": 2,
        "logging_steps": 1,
        "step_separator": "\n",
        "learning_rate": 1e-3,
    }
    out = tmp_path / "prm"
    assert (
        main(
            [
                "train-prm",
                "--config",
                json.dumps(config),
                "--step-separator",
                "\\n\\n",
                "--limit",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    recorded = json.loads((out / "prm_config.json").read_text())
    assert recorded["step_separator"] == "\n\n"
    assert recorded["settings"]["limit"] == 8 and recorded["global_step"] == 2


@pytest.mark.parametrize("command", ["train-prm", "label-steps", "processbench"])
def test_learn_commands_have_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: sal " + command in capsys.readouterr().out
