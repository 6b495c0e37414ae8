"""Settings of the learn steps (label-steps, train-prm, processbench), and their place in a workflow
config: `labels:` entries, `prms.<name>.train` blocks and the `processbench:` block.

The dataclasses here are what the commands take (`sal label-steps --config`, `sal train-prm --config`);
`build_learn` checks the config's learn keys at parse time, like the rest of the grid, so a bad
value stops the workflow before any job, naming the key. Importing this module loads no model
library: the Snakefile reads it on every parse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sal_core import paths
from sal_core.constants import CONTINUATIONS, PROCESSBENCH_SPLITS, STEP_SEPARATOR
from sal_core.errors import ConfigError
from sal_core.settings.build import Settings, option, require_at_least, require_one_of
from sal_core.settings.dataset import DatasetSettings
from sal_core.settings.jobs import GenerateJob, ModelSettings, PRMSettings, SearchSettings
from sal_core.settings.stepwise_source import fingerprint as data_fingerprint
from sal_core.settings.stepwise_source import is_local

#: training settings that change how a run is watched or stored, never the trained weights
OPERATIONAL = ("logging_steps", "save_steps", "save_total_limit", "dataset_num_proc", "report_to")
#: results/<name>/ folders the learn steps own: no dataset may take these names
RESERVED_DATASET_NAMES = ("labels", "processbench")


@dataclass
class LabelSettings(Settings):
    """How steps are labelled: rollouts per step, their token budget and sampling, and what to label."""

    KEY = "labeling"

    k: int = option(4, "rollouts per step")
    max_tokens: int = option(512, "token budget of each rollout")
    temperature: float = option(0.8, "rollout temperature")
    top_p: float = option(1.0, "rollout nucleus sampling")
    seed: int = option(0, "run seed; each rollout's seed derives from it")
    max_completions: int | None = option(None, "label only the first N completions of each problem (null: all)")
    max_steps: int | None = option(None, "label only the first N steps of each completion (null: all)")
    stop: tuple[str, ...] | list[str] = option(
        (), "strings that end a rollout, e.g. '\\n\\nProblem:' for a few-shot prompt (backslash escapes as flags)"
    )
    continuation: str = option(
        "reencode",
        "reencode: the prefix's text tokenized anew; exact: the completion's own ids cut at a token boundary",
    )

    def identity(self) -> dict[str, Any]:
        """Every setting, `continuation` only away from `reencode` (labels made before it rerun nothing)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if data["continuation"] == CONTINUATIONS[0]:
            data.pop("continuation")
        return data

    def validate(self, where: str) -> None:
        for key in ("k", "max_tokens"):
            require_at_least(getattr(self, key), 1, f"{where}.{key}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"{where}.temperature / top_p: need temperature >= 0 and top_p in (0, 1]")
        for key in ("max_completions", "max_steps"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: must be at least 1 (or null), got {getattr(self, key)}")
        require_one_of(self.continuation, CONTINUATIONS, f"{where}.continuation")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"{where}.stop: must be non-empty strings, got {list(self.stop)}")
        self.stop = tuple(self.stop)


@dataclass
class TrainSettings(Settings):
    """Everything that decides a trained PRM (defaults: TRL's PRMConfig, except gradient checkpointing)."""

    KEY = "training"

    base_model: str = option(help="causal LM to start from (local folder or Hub name); a 2-label head is added")
    dataset: str | list[str] = option(
        help="stepwise data: local .jsonl/.json/.parquet files (read as one) or a Hub name (trl-lib/prm800k)"
    )
    split: str = option("train", "Hub split")
    subset: str | None = option(None, "Hub dataset config")
    limit: int | None = option(None, "use only the first N rows")
    step_separator: str = option(
        STEP_SEPARATOR, "text after each step (backslash escapes as a flag); must match how the search cuts steps"
    )
    max_length: int | None = option(1024, "truncate prompt + steps to this many tokens")
    max_completion_length: int | None = option(None, "truncate the steps to this many tokens first")
    train_on_last_step_only: bool = option(False, "label only the last step of each row")
    epochs: float = option(1.0, "passes over the data (ignored when max_steps is set)")
    max_steps: int = option(-1, "optimizer steps in all (-1: from epochs)")
    learning_rate: float = option(1e-5, "peak learning rate (TRL's default; SAL's recipes: 1e-6, full fine-tuning)")
    batch_size: int = option(8, "rows per device per step")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    warmup_steps: int = option(0, "linear warm-up steps")
    weight_decay: float = option(0.0, "AdamW weight decay")
    lr_scheduler: str = option("linear", "transformers scheduler name (linear, cosine, constant, ...)")
    bf16: bool | None = option(None, "bf16 mixed precision (null: on a GPU that supports it; weights stay float32)")
    gradient_checkpointing: bool = option(False, "trade compute for memory (SAL's recipes turn it on)")
    disable_dropout: bool = option(True, "switch dropout off, as TRL does by default")
    freeze_base: bool = option(
        False, "train only the classification head on the frozen model (a linear probe: the cheapest; no LoRA)"
    )
    lora_r: int = option(0, "LoRA rank; 0 trains every weight")
    lora_alpha: int = option(16, "LoRA scaling")
    lora_dropout: float = option(0.05, "LoRA dropout (0 in effect while dropout is disabled)")
    lora_target_modules: list[str] | str = option(
        "all-linear", "modules that get adapters ('all-linear' or names such as q_proj v_proj)"
    )
    seed: int = option(42, "training seed")
    logging_steps: int = option(10, "log the loss every N steps")
    save_steps: int = option(500, "save a resumable checkpoint every N steps")
    save_total_limit: int = option(2, "keep at most N checkpoints")
    dataset_num_proc: int | None = option(None, "processes for tokenizing")
    report_to: str = option("none", "trainer integrations (none, wandb, tensorboard)")

    def validate(self, where: str) -> None:
        positive = ("learning_rate", "batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{where}.{key}: must be > 0, got {getattr(self, key)}")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError(f"{where}.epochs: must be > 0 when max_steps is not set, got {self.epochs}")
        for key in ("max_length", "max_completion_length", "limit"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: must be at least 1 (or null), got {getattr(self, key)}")
        if not self.dataset or (isinstance(self.dataset, list) and not all(self.dataset)):
            raise ConfigError(f"{where}.dataset: a file, a Hub name, or a list of files")
        if not self.step_separator:
            raise ConfigError(f"{where}.step_separator: must not be empty")
        if self.lora_r < 0 or (self.lora_r and self.lora_alpha <= 0):
            raise ConfigError(f"{where}.lora_r / lora_alpha: r must be >= 0 (0 = no LoRA) and alpha > 0")
        if self.freeze_base and self.lora_r:
            raise ConfigError(f"{where}.freeze_base: trains the head alone; it cannot be combined with lora_r")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"{where}.lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError(f"{where}.warmup_steps / weight_decay: must be >= 0")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the weights, plus the data's identity (a local file's content hash)."""
        decisive = {k: v for k, v in asdict(self).items() if k not in OPERATIONAL}
        decisive["dataset_fingerprint"] = data_fingerprint(self.dataset, self.split, self.subset)
        return decisive


@dataclass
class ProcessBenchSettings(Settings):
    """The `processbench:` block: which PRMs to benchmark, on which samples, at which threshold."""

    KEY = "processbench"

    prms: list[str]
    #: `builtin` (the shipped subset), a folder of {split}.json, a .jsonl/.json/.parquet file, or Qwen/ProcessBench
    data: str = "builtin"
    splits: list[str] = field(default_factory=lambda: list(PROCESSBENCH_SPLITS))
    #: the first N samples of each split (None: all)
    limit: int | None = None
    threshold: float = 0.5

    def validate(self, where: str) -> None:
        if not self.prms:
            raise ConfigError(f"{where}.prms: name at least one PRM to benchmark")
        unknown = sorted(set(self.splits) - set(PROCESSBENCH_SPLITS))
        if unknown or not self.splits:
            raise ConfigError(f"{where}.splits: {unknown or 'none'}: choose from {', '.join(PROCESSBENCH_SPLITS)}")
        if self.limit is not None:
            require_at_least(self.limit, 1, f"{where}.limit")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"{where}.threshold: must be in (0, 1), got {self.threshold}")
        from sal_core.hub import HUB_NAME

        local = Path(self.data).suffix in (".jsonl", ".json", ".parquet") or not HUB_NAME.fullmatch(self.data)
        if self.data != "builtin" and local and not Path(self.data).exists():
            raise ConfigError(f"{where}.data: {self.data} is neither 'builtin', a local file or folder, nor a Hub name")

    def options(self) -> str:
        """The `sal processbench` flags these settings give (the rule's params: a change reruns it)."""
        limit = f" --limit {self.limit}" if self.limit else ""
        return f"--data {self.data} --splits {' '.join(self.splits)} --threshold {self.threshold}{limit}"


@dataclass
class LabelsEntry:
    """One `labels:` entry: a policy samples a problem set (Best-of-N), rollouts label the steps."""

    name: str
    dataset: DatasetSettings
    #: the `models:` entry that samples and rolls out
    model: str
    #: the sampling job (the model's settings and a best_of_n search)
    job: GenerateJob
    labeling: LabelSettings


@dataclass
class TrainedPRM:
    """A `prms:` entry with a `train:` block: the train_prm rule builds its folder."""

    name: str
    #: the training settings; for a `labels:` dataset, `dataset` is filled in per workflow (its shard files)
    settings: TrainSettings
    #: the `labels:` entry it trains on, or None for a file / Hub dataset of its own
    labels: str | None
    #: files and folders the training job waits for (a local dataset, a prepared base model)
    inputs: list[str]
    #: `accelerate launch --config_file` for multi-GPU jobs (DeepSpeed, FSDP); None: accelerate's default
    accelerate_config: str | None = None

    def job(self, step_files: list[str]) -> TrainSettings:
        """The settings the train_prm job runs with: a labels entry's data is its shard step files."""
        if self.labels is None:
            return self.settings
        return replace(self.settings, dataset=list(step_files))


@dataclass
class Learn:
    """The learn part of a config: labels entries, trained PRMs and the ProcessBench block (if any)."""

    labels: dict[str, LabelsEntry] = field(default_factory=dict)
    trained: dict[str, TrainedPRM] = field(default_factory=dict)
    processbench: ProcessBenchSettings | None = None


def trained_entry(name: str, entry: dict[str, Any], where: str) -> dict[str, Any]:
    """A trained PRM's `prms:` entry without its `train:` block, its path set to the folder the
    train_prm rule writes (the block itself is read by `build_learn`)."""
    entry = dict(entry)
    entry.pop("train")
    for key in ("path", "prepare"):
        if key in entry:
            folder = paths.trained_prm(name)
            raise ConfigError(f"{where}.{key}: a trained PRM lives in {folder}; drop `{key}` or `train`")
    if entry.get("type") != "trl":
        raise ConfigError(f"{where}.type: a trained PRM is a token classifier: set `type: trl`")
    return {**entry, "path": paths.trained_prm(name)}


def build_learn(
    config: dict[str, Any],
    models: dict[str, ModelSettings],
    prms: dict[str, PRMSettings],
    prepared: dict[str, str],
) -> Learn:
    """Check the config's learn keys (labels, prms.*.train, processbench); ConfigError names the key."""
    dataset = (config.get("dataset") or {}).get("name")
    if dataset in RESERVED_DATASET_NAMES:
        raise ConfigError(f"dataset.name: {dataset!r} is reserved (results/{dataset}/ holds the learn steps' files)")
    labels = {name: _labels_entry(name, entry, models) for name, entry in (config.get("labels") or {}).items()}
    trained = {}
    for name, entry in (config.get("prms") or {}).items():
        if isinstance(entry, dict) and "train" in entry:
            trained[name] = _trained_prm(name, entry["train"], models, labels, prepared)
    block = config.get("processbench")
    processbench = None
    if block is not None:
        from sal_core.settings.grid import _prm_name

        processbench = ProcessBenchSettings.from_dict(dict(block), "processbench")
        for prm in processbench.prms:
            _prm_name(prm, "processbench.prms", prms)
    return Learn(labels, trained, processbench)


def _labels_entry(name: str, entry: Any, models: dict[str, ModelSettings]) -> LabelsEntry:
    from sal_core.settings.grid import DOTTED_NAME_PATTERN, _check_name

    where = f"labels.{name}"
    _check_name(name, where, DOTTED_NAME_PATTERN)
    entry = dict(entry or {})
    if not isinstance(entry.get("dataset"), dict):
        raise ConfigError(f"{where}.dataset: missing (the problems to sample, as a `dataset:` block)")
    dataset = DatasetSettings.from_dict({"name": name, **entry.pop("dataset")}, f"{where}.dataset")
    model = entry.pop("model", None)
    if model not in models:
        raise ConfigError(f"{where}.model: {model!r} is not a model defined under models ({', '.join(models)})")
    sample = {"method": "best_of_n", **dict(entry.pop("sample", None) or {})}
    if sample["method"] != "best_of_n":
        raise ConfigError(f"{where}.sample.method: labels are sampled by best_of_n, got {sample['method']!r}")
    if "n" not in sample:
        raise ConfigError(f"{where}.sample.n: missing (samples per problem)")
    search = SearchSettings.from_dict(sample, f"{where}.sample")
    labeling = LabelSettings.from_dict(entry, where)
    return LabelsEntry(name, dataset, model, GenerateJob(model=models[model], search=search), labeling)


def _trained_prm(
    name: str, train: Any, models: dict[str, ModelSettings], labels: dict[str, LabelsEntry], prepared: dict[str, str]
) -> TrainedPRM:
    from sal_core.settings.grid import check_model_path

    where = f"prms.{name}.train"
    train = dict(train or {})
    accelerate_config = train.pop("accelerate_config", None)
    base = train.get("base_model")
    if not base:
        raise ConfigError(f"{where}.base_model: missing (a models: entry, a local model folder or a Hub name)")
    inputs = []
    if base in models:
        train["base_model"] = models[base].path
        inputs += [models[base].path] if models[base].path in prepared else []
    else:
        check_model_path(str(base), f"{where}.base_model")
    source = train.pop("labels", None)
    if (source is None) == ("dataset" not in train):
        raise ConfigError(f"{where}: give `labels` (a labels: entry) or `dataset` (a file or Hub name), one of them")
    if source is not None:
        if source not in labels:
            raise ConfigError(f"{where}.labels: {source!r} is not defined under labels (defined: {', '.join(labels)})")
        train["dataset"] = paths.LABELS.format(labels=source)  # until `TrainedPRM.job` names the shard files
    elif is_local(str(train["dataset"])):
        if not Path(train["dataset"]).is_file():
            raise ConfigError(f"{where}.dataset: local file {train['dataset']} does not exist")
        inputs.append(str(train["dataset"]))
    settings = TrainSettings.from_dict(train, where)
    return TrainedPRM(name, settings, source, inputs, accelerate_config)
