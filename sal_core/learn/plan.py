"""What the learn rules (workflow/rules/learn.smk) ask of a checked config: their inputs, params and
targets, with every path from sal_core.paths.

A `labels:` entry is sampled and labelled shard by shard over its own problem set (snapshotted at
parse time, as the dataset is); a trained PRM waits for the step files of its labels entry (or its
own local dataset file) and for its base model's prepared folder, and its params are its training
settings, so a changed setting retrains it, and then every job that reads its folder reruns
because its input changed; nothing else does. ProcessBench runs once per PRM of the
`processbench:` block and waits for that PRM's prepared or trained folder.
"""

from __future__ import annotations

from typing import Any

from sal_core import paths
from sal_core.errors import DatasetError
from sal_core.pipeline.prepare_dataset import shard_ranges, snapshot_problems
from sal_core.settings.build import to_json
from sal_core.settings.grid import Grid


def train_command(gpus: int, accelerate_config: str | None = None) -> str:
    """How a train_prm job starts `sal train-prm`: directly on a CPU or one GPU, through
    `accelerate launch` (one process per GPU, data parallel) on several; an accelerate config file
    (DeepSpeed, FSDP) replaces plain DDP's `--multi_gpu`."""
    if gpus <= 1:
        return "sal train-prm"
    setup = f"--config_file {accelerate_config}" if accelerate_config else "--multi_gpu"
    return f"accelerate launch {setup} --num_processes {gpus} -m sal_core.cli train-prm"


class LearnPlan:
    """The learn part of one config as inputs, params and targets for the rules."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.learn = grid.learn
        #: labels entry -> its shard ranges; the snapshot is written (or found current) here, at parse time
        self.label_shards = {name: self._snapshot(name) for name in self.learn.labels}

    def _snapshot(self, name: str) -> list[tuple[int, int]]:
        dataset = self.learn.labels[name].dataset
        try:
            count = snapshot_problems(dataset, paths.LABEL_PROBLEMS.format(labels=name))
        except DatasetError as err:  # its messages name `dataset.<key>`: say which dataset
            raise DatasetError(f"labels.{name}: {err}") from err
        return shard_ranges(count, dataset.shard_size)

    def names(self, key: str) -> list[str]:
        """The values a wildcard of the learn rules takes: `labels` entries or `prm`s trained here."""
        return sorted(self.learn.labels if key == "labels" else self.learn.trained)

    def label_models(self, wildcards: Any) -> list[str]:
        """The prepared folder of the labels entry's policy, if it is one."""
        return self.grid.built(self.learn.labels[wildcards.labels].job.model.path)

    def label_job(self, wildcards: Any) -> str:
        """The sampling job (GenerateJob JSON) of a labels entry."""
        return to_json(self.learn.labels[wildcards.labels].job)

    def label_model(self, wildcards: Any) -> str:
        return to_json(self.learn.labels[wildcards.labels].job.model)

    def label_settings(self, wildcards: Any) -> str:
        return to_json(self.learn.labels[wildcards.labels].labeling)

    def step_files(self, labels: str) -> list[str]:
        """The step files of a labels entry, one per shard, in dataset order."""
        return [paths.LABEL_STEPS.format(labels=labels, start=s, end=e) for s, e in self.label_shards[labels]]

    def _labelled_steps(self, prm: str) -> list[str]:
        """The step files a trained PRM learns from, when its data is a labels entry of the config."""
        labels = self.learn.trained[prm].labels
        return self.step_files(labels) if labels else []

    def train_inputs(self, wildcards: Any) -> list[str]:
        """What a train_prm job waits for: its data files and its base model's prepared folder."""
        return [*self._labelled_steps(wildcards.prm), *self.learn.trained[wildcards.prm].inputs]

    def train_settings(self, wildcards: Any) -> str:
        """The training settings (JSON) a train_prm job runs with: its params, so a change retrains."""
        return to_json(self.learn.trained[wildcards.prm].job(self._labelled_steps(wildcards.prm)))

    def train_launch(self, wildcards: Any, resources: Any) -> str:
        """`sal train-prm`, or `accelerate launch ...` when the job has several GPUs (resources.gpu)."""
        gpus = int(getattr(resources, "gpu", 0) or 0)
        return train_command(gpus, self.learn.trained[wildcards.prm].accelerate_config)

    def prm_models(self, wildcards: Any) -> list[str]:
        """The prepared or trained folder a PRM needs before it can be benchmarked."""
        return self.grid.built(self.grid.prms[wildcards.prm].path)

    def processbench_options(self) -> str:
        settings = self.learn.processbench
        return settings.options() if settings else ""

    def processbench_tables(self) -> list[str]:
        settings = self.learn.processbench
        return [paths.PROCESSBENCH_TABLE.format(prm=prm) for prm in (settings.prms if settings else [])]

    def targets(self) -> list[str]:
        """What `all` asks of the learn steps: every labels entry's step files, every trained PRM,
        and the ProcessBench tables and chart (whether or not a search or score job uses them)."""
        files = [path for labels in self.names("labels") for path in self.step_files(labels)]
        files += [paths.trained_prm(prm) for prm in self.names("prm")]
        if self.learn.processbench:
            files += [*self.processbench_tables(), paths.PROCESSBENCH_PLOT]
        return files
