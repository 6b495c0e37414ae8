"""The learn keys of a workflow config (labels, prms.<name>.train, processbench) are checked when the
workflow is parsed, with one error line naming the key; a trained PRM's folder is a rule's output that
its users wait for; the schema lists exactly the settings the code takes; training on several GPUs
goes through `accelerate launch`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from sal_core import paths
from sal_core.constants import PROCESSBENCH_SPLITS
from sal_core.errors import SalError
from sal_core.learn.plan import train_command
from sal_core.resources import RULE_DEFAULTS
from sal_core.settings.check import check_config
from sal_core.settings.learn import LabelSettings, ProcessBenchSettings, TrainSettings

REPO = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def smoke_learn() -> dict:
    return yaml.safe_load((REPO / "config" / "smoke_learn.yaml").read_text())


def test_a_trained_prm_is_a_built_folder_and_its_labels_entry_samples_with_best_of_n() -> None:
    grid = check_config(smoke_learn(), SCHEMA_PATH)
    assert grid.prms["tiny-prm"].path == paths.trained_prm("tiny-prm") == "resources/prms/tiny-prm"
    assert grid.built_folders == {"resources/models/tiny-random", "resources/prms/tiny-prm"}
    trained = grid.learn.trained["tiny-prm"]
    assert trained.labels == "pool" and trained.inputs == ["resources/models/tiny-random"]
    assert trained.settings.base_model == "resources/models/tiny-random" and trained.settings.lora_r == 4
    assert trained.job(["a.parquet", "b.parquet"]).dataset == ["a.parquet", "b.parquet"]
    entry = grid.learn.labels["pool"]
    assert (entry.job.search.method, entry.job.search.n, entry.job.model.name) == ("best_of_n", 2, "tiny")
    assert (entry.labeling.k, entry.labeling.max_tokens, entry.dataset.name) == (1, 6, "pool")
    assert grid.learn.processbench.options() == "--data builtin --splits gsm8k --threshold 0.5 --limit 2"
    guided = [run for run in grid.runs if run.search_prm == "tiny-prm"]
    assert guided and guided[0].job.prm.path == "resources/prms/tiny-prm"


def test_a_prm_trained_on_a_hub_dataset_waits_for_nothing_but_a_local_file_is_an_input(tmp_path: Path) -> None:
    config = smoke_learn()
    config["prms"]["tiny-prm"]["train"] = {
        "base_model": "Qwen/Qwen2.5-Math-1.5B-Instruct",
        "dataset": "trl-lib/prm800k",
    }
    assert check_config(config, SCHEMA_PATH).learn.trained["tiny-prm"].inputs == []
    data = tmp_path / "steps.jsonl"
    data.write_text("")
    config["prms"]["tiny-prm"]["train"] = {"base_model": "tiny", "dataset": str(data)}
    trained = check_config(config, SCHEMA_PATH).learn.trained["tiny-prm"]
    assert trained.inputs == ["resources/models/tiny-random", str(data)] and trained.job([]).dataset == str(data)


def _set(path: str, value) -> callable:
    def change(config: dict) -> None:
        *parents, key = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[key] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("prms.tiny-prm.path", "resources/x"), r"^prms\.tiny-prm\.path: a trained PRM lives in resources/prms/"),
        (_set("prms.tiny-prm.type", "rlhflow"), r"^prms\.tiny-prm\.type: a trained PRM is a token classifier"),
        (_set("prms.tiny-prm.train.labels", "nope"), r"^prms\.tiny-prm\.train\.labels: 'nope' is not defined"),
        (_set("prms.tiny-prm.train.dataset", "a/b"), r"^prms\.tiny-prm\.train: give `labels` .* or `dataset`"),
        (_set("prms.tiny-prm.train.base_model", "nowhere"), r"^prms\.tiny-prm\.train\.base_model: nowhere is neither"),
        (_set("prms.tiny-prm.train.lora_rank", 4), r"^prms\.tiny-prm\.train\.lora_rank: unknown key"),
        (_set("prms.tiny-prm.train.learning_rate", 0), r"^prms\.tiny-prm\.train\.learning_rate: "),
        (_set("prms.tiny-prm.train.freeze_base", True), r"^prms\.tiny-prm\.train\.freeze_base: .*lora_r"),
        (_set("labels.pool.model", "big"), r"^labels\.pool\.model: 'big' is not a model defined under models"),
        (_set("labels.pool.sample.method", "beam_search"), r"^labels\.pool\.sample\.method: 'beam_search' is not"),
        (_set("labels.pool.k", 0), r"^labels\.pool\.k: "),
        (_set("labels.pool.dataset.path", "nope"), r"^labels\.pool: dataset\.path: no built-in dataset 'nope'"),
        (_set("processbench.prms", ["tiny-judge", "nope"]), r"^processbench\.prms: 'nope' is not a PRM defined"),
        (_set("processbench.data", "data/pb.jsonl"), r"^processbench\.data: data/pb\.jsonl is neither 'builtin'"),
        (_set("processbench.splits", ["aime"]), r"^processbench\.splits\.0: 'aime' is not one of gsm8k"),
        (_set("dataset.name", "labels"), r"^dataset\.name: 'labels' is reserved"),
        (_set("resources.train_prm.gpus", 2), r"^resources\.train_prm\.gpus: unknown key"),
    ],
)
def test_a_bad_learn_setting_fails_at_parse_time_naming_its_key(change, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # where the workflow would snapshot the labels entry's problems
    config = smoke_learn()
    change(config)
    with pytest.raises(SalError, match=message):
        from sal_core.learn.plan import LearnPlan  # the workflow builds it right after the grid (snapshots)

        LearnPlan(check_config(config, SCHEMA_PATH))


def test_the_schema_lists_exactly_the_learn_settings_the_code_takes() -> None:
    defs = SCHEMA["$defs"]
    names = lambda cls: {f.name for f in fields(cls)}  # noqa: E731
    assert set(defs["train"]["properties"]) == names(TrainSettings) | {"labels", "accelerate_config"}
    assert set(defs["labels"]["properties"]) == names(LabelSettings) | {"dataset", "model", "sample"}
    block = SCHEMA["properties"]["processbench"]["properties"]
    assert set(block) == names(ProcessBenchSettings)
    assert block["splits"]["items"]["enum"] == list(PROCESSBENCH_SPLITS)


def test_training_on_several_gpus_runs_through_accelerate_launch() -> None:
    assert train_command(0) == train_command(1) == "sal train-prm"
    assert train_command(4) == "accelerate launch --multi_gpu --num_processes 4 -m sal_core.cli train-prm"
    assert train_command(8, "zero3.yaml") == (
        "accelerate launch --config_file zero3.yaml --num_processes 8 -m sal_core.cli train-prm"
    )


def test_the_slurm_profile_gives_training_several_gpus_of_one_node() -> None:
    """The GPUs are the config's (resources.train_prm.gpu, sal_core.resources); the profile keeps them on one node."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["set-resources"]["train_prm"] == {"nodes": 1}
    assert all(RULE_DEFAULTS[rule]["gpu"] == 1 for rule in ("label_sample", "label_steps", "processbench"))


def test_the_seeds_gpu_recipe_config_trains_with_its_settings() -> None:
    """config/experiments/prm_qwen_math.yaml: search-and-learn's recipe (docs/learn.md, /recipes/training)."""
    config = yaml.safe_load((REPO / "config" / "experiments" / "prm_qwen_math.yaml").read_text())
    grid = check_config(config, SCHEMA_PATH)
    trained = grid.learn.trained["qwen-math-prm"]
    recipe = {
        "base_model": "Qwen/Qwen2.5-Math-1.5B-Instruct",
        "learning_rate": 1e-6,
        "batch_size": 16,
        "gradient_accumulation_steps": 4,
        "epochs": 1,
        "max_steps": -1,
        "warmup_steps": 50,
        "max_length": 2048,
        "step_separator": "\n\n",
        "bf16": True,
        "gradient_checkpointing": True,
        "lora_r": 0,
        "logging_steps": 25,
    }
    assert {key: getattr(trained.settings, key) for key in recipe} == recipe
    assert trained.inputs == [] and trained.accelerate_config == "deepspeed_zero3.yaml"
    assert config["resources"]["train_prm"]["gpu"] == 8
    assert all(run.job.prm.path == "resources/prms/qwen-math-prm" for run in grid.runs if run.method == "beam_search")
