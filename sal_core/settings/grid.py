"""The experiment grid: every run a config asks for, validated before any job starts.

The Snakefile imports this module at parse time. A run is one model × approach (× n for beam
search and particle filtering) × sampling × seed; its `run_id` is the `{run}` wildcard value. Best-of-N
and DVTS run once at their largest n (evaluation subsamples smaller n); beam search and particle
filtering run once per n (a smaller run's beams or particles are not a subset of a larger one's). For methods
guided by a PRM, the PRM's name is part of the run id, so two in-search PRMs never share a path.

The guiding PRM is the approach's `prm`, else the model's `search_prm`, else the config's
`search_prm`; the scoring PRMs are the model's `score_prms`, else the config's. Per-model PRMs carry
published recipes that pair a model with its own PRM (search-and-learn's AceMath-7B runs with
Qwen2.5-Math-PRM-7B, its other models with RLHFlow's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sal_core.constants import GUIDED_METHODS, ONE_RUN_PER_N, PREPARED_SOURCES
from sal_core.errors import ConfigError
from sal_core.hub import HUB_NAME
from sal_core.paths import prepared_model, trained_prm
from sal_core.settings.build import require_at_least, require_one_of
from sal_core.settings.dataset import DatasetSettings
from sal_core.settings.endpoint import SERVERS_KEY, Servers, build_servers
from sal_core.settings.jobs import GenerateJob, ModelSettings, PRMSettings, SearchSettings
from sal_core.settings.learn import Learn, build_learn, trained_entry

#: approach names carry no dot: the run id appends `.{prm}` to them
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"
#: models, PRMs and samplings may (`qwen2.5-1.5b`, `t0.8`)
DOTTED_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
SAMPLING_KEYS = ("temperatures", "temperature_ratios", "top_p")
#: keys of a `models:` entry that place the model in the grid rather than configure it
MODEL_GRID_KEYS = ("search_prm", "score_prms")


@dataclass(frozen=True)
class Run:
    """One generation run: the unit of `generate` jobs (one per shard) and of evaluation."""

    model: str
    approach: str
    run_id: str
    method: str
    n: int
    sampling: str
    seed: int
    search_prm: str | None
    job: GenerateJob
    #: the PRMs that score this run's completions
    score_prms: tuple[str, ...] = ()
    #: problems per generate / score job: the approach's `shard_size`, else the dataset's. Not part of
    #: the job's settings: a search's results do not depend on its shard (tests/test_shard_independence.py)
    shard_size: int = DatasetSettings.shard_size

    def metadata(self, dataset: str, prm: str) -> dict[str, Any]:
        """What a merged file records about its run (parquet metadata), read back by evaluate and push."""
        return {
            "dataset": dataset,
            "model": self.model,
            "approach": self.approach,
            "run_id": self.run_id,
            "method": self.method,
            "n": self.n,
            "beam_width": self.job.search.beam_width,
            "sampling": self.sampling,
            "seed": self.seed,
            "search_prm": self.search_prm or "",
            "prm": prm,
        }


@dataclass
class Grid:
    dataset: DatasetSettings
    models: dict[str, ModelSettings]
    prms: dict[str, PRMSettings]
    #: prepared model folder -> prepare source
    prepared: dict[str, str]
    #: the config's `score_prms` (a run's own list is `Run.score_prms`)
    score_prms: list[str]
    runs: list[Run]
    #: the sampling the `sampling_gain` figure subtracts (evaluation.baseline_sampling)
    baseline_sampling: str = ""
    #: where the served models and PRMs are, by name: given to jobs apart from their settings
    servers: Servers = field(default_factory=dict)
    #: labels entries, trained PRMs and ProcessBench (sal_core.settings.learn)
    learn: Learn = field(default_factory=Learn)

    def __post_init__(self) -> None:
        self._by_key = {(r.model, r.run_id, r.sampling, r.seed): r for r in self.runs}

    @cached_property
    def built_folders(self) -> set[str]:
        """Model folders a rule builds (prepare_model, train_prm): a job that uses one waits for it."""
        return set(self.prepared) | {trained_prm(name) for name in self.learn.trained}

    def built(self, *folders: str) -> list[str]:
        """Those of `folders` a rule builds: a job's inputs, so it waits for them."""
        return sorted({folder for folder in folders if folder in self.built_folders})

    def run(self, model: str, run_id: str, sampling: str, seed: int | str) -> Run:
        return self._by_key[(model, run_id, sampling, int(seed))]

    def run_ids(self) -> list[str]:
        return sorted({r.run_id for r in self.runs})


def _check_name(name: str, where: str, pattern: str = NAME_PATTERN) -> None:
    if not re.fullmatch(pattern, str(name)):
        raise ConfigError(f"{where}: name {name!r} must match {pattern} (it becomes part of file paths)")


def _require_mapping(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{key}: needs at least one entry")
    return value


def _prepared_path(entry: dict[str, Any], where: str, prepared: dict[str, str]) -> dict[str, Any]:
    """Resolve `prepare: SOURCE` into the folder the prepare_model rule writes."""
    entry = dict(entry)
    source = entry.pop("prepare", None)
    if source is None:
        if entry.get("type") == "verifier":  # no weights: PRMSettings refuses a path
            return entry
        if "path" in entry:
            check_model_path(str(entry["path"]), f"{where}.path")
        elif entry.get("type") != "server":  # a served PRM needs no weights (PRMSettings checks api vllm-pooling)
            raise ConfigError(f"{where}.path: missing (a Hub name or a local folder)")
        return entry
    require_one_of(source, PREPARED_SOURCES, f"{where}.prepare")
    folder = prepared_model(source)
    if entry.setdefault("path", folder) != folder:
        raise ConfigError(f"{where}.path: a prepared model lives in {folder}; drop `path` or `prepare`")
    prepared[folder] = source
    return entry


def check_model_path(path: str, where: str) -> None:
    """A model path must be a local model folder or look like a Hub name (`org/model`).

    Caught here, at parse time, a typo costs nothing; caught in a job, it costs a queue wait.
    Hub names cannot be checked without the network, so the job reports those.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(f"{where}: {path} is a folder but not a model folder (no config.json)")
        return
    if local.exists():
        raise ConfigError(f"{where}: {path} is a file; give the model's folder or a Hub name")
    if not HUB_NAME.fullmatch(path):
        raise ConfigError(f"{where}: {path} is neither a local model folder nor a Hub model name (org/model)")


def _prm_name(name: Any, where: str, prms: dict[str, PRMSettings]) -> str:
    if name not in prms:
        raise ConfigError(f"{where}: {name!r} is not a PRM defined under prms (defined: {', '.join(prms)})")
    return name


def build_grid(config: dict[str, Any]) -> Grid:
    """Validate the whole config and expand it into runs; raises ConfigError naming the bad key."""
    dataset = DatasetSettings.from_dict(dict(config.get("dataset") or {}), "dataset")
    prepared: dict[str, str] = {}
    stripped, placement = model_placement(config)
    models = named_settings(stripped, "models", ModelSettings, prepared, required=True)
    prms = named_settings(config, "prms", PRMSettings, prepared, required=False)
    score_prms = _score_prms(config.get("score_prms"), "score_prms", prms)
    for name, (model_prm, _) in placement.items():
        if model_prm is not None:
            _prm_name(model_prm, f"models.{name}.search_prm", prms)
    samplings = _samplings(config)
    seeds = config.get("seeds") or [0]
    runs: list[Run] = []
    for approach, entry in _require_mapping(config, "approaches").items():
        method, ns, own_prm, search = _approach_entry(approach, entry)
        shard_size = _approach_shard_size(search, f"approaches.{approach}.shard_size", dataset.shard_size)
        for model_name, model in models.items():
            model_prm, model_scores = placement[model_name]
            scorers = tuple(_score_prms(model_scores, f"models.{model_name}.score_prms", prms) or score_prms)
            if own_prm is not None:
                prm, prm_key = own_prm, f"approaches.{approach}.prm"
            elif model_prm is not None:
                prm, prm_key = model_prm, f"models.{model_name}.search_prm"
            else:
                prm, prm_key = config.get("search_prm"), "search_prm"
            for run_id, n, search_prm in _approach_runs(approach, method, ns, prm, prm_key, prms):
                for sampling, sampling_entry in samplings.items():
                    for seed in seeds:
                        settings = SearchSettings.from_dict(
                            {**search, **(sampling_entry or {}), "n": n, "seed": seed}, f"approaches.{approach}"
                        )
                        job = GenerateJob(model=model, search=settings, prm=prms.get(search_prm or ""))
                        keys = (model_name, approach, run_id, method, n, sampling, int(seed), search_prm, job, scorers)
                        runs.append(Run(*keys, shard_size=shard_size))
    if len({(r.model, r.run_id, r.sampling, r.seed) for r in runs}) != len(runs):
        raise ConfigError("approaches: two approaches produce the same run name; rename one")
    baseline = _baseline_sampling(config, list(samplings))
    servers = _servers(config, models, prms)
    return Grid(
        dataset,
        models,
        prms,
        prepared,
        score_prms,
        runs,
        baseline,
        servers,
        build_learn(config, models, prms, prepared),
    )


def _servers(config: dict[str, Any], models: dict[str, ModelSettings], prms: dict[str, PRMSettings]) -> Servers:
    """The `servers:` block: one location for every served model and PRM, and none for anything else."""
    served = {name: "model" for name, model in models.items() if model.served}
    for name, prm in prms.items():
        if prm.served and name in served:
            raise ConfigError(f"{SERVERS_KEY}.{name}: names both a served model and a served PRM; rename one")
        if prm.served:
            served[name] = "PRM"
    servers = build_servers(config.get(SERVERS_KEY))
    for name in servers:
        if name not in served:
            listed = ", ".join(served) or "none in this config"
            raise ConfigError(
                f"{SERVERS_KEY}.{name}: not a model with backend openai nor a PRM of type server (served: {listed})"
            )
    for name, what in served.items():
        if name not in servers:
            kind = "models" if what == "model" else "prms"
            raise ConfigError(f"{SERVERS_KEY}.{name}: missing: {kind}.{name} is served, so say where its server is")
    return servers


def _baseline_sampling(config: dict[str, Any], samplings: list[str]) -> str:
    """`evaluation.baseline_sampling`, checked; the first sampling listed when unset."""
    baseline = (config.get("evaluation") or {}).get("baseline_sampling", samplings[0])
    if baseline not in samplings:
        raise ConfigError(
            f"evaluation.baseline_sampling: {baseline!r} is not a sampling defined under samplings"
            f" (defined: {', '.join(samplings)})"
        )
    return baseline


def _score_prms(names: Any, where: str, prms: dict[str, PRMSettings]) -> list[str]:
    """Scoring PRM names, each defined under `prms`; a model without its own list gives []."""
    if names is None and where != "score_prms":
        return []
    listed = [_prm_name(p, where, prms) for p in names or []]
    if not listed:
        raise ConfigError(f"{where}: name at least one PRM to score completions with")
    return listed


def model_placement(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The config with each model entry's grid keys (`search_prm`, `score_prms`) removed, so the
    rest builds ModelSettings, and those keys per model (the caller's config is not changed)."""
    placement, entries = {}, {}
    for name, entry in (config.get("models") or {}).items():
        entry = dict(entry or {})
        placement[name] = tuple(entry.pop(key, None) for key in MODEL_GRID_KEYS)
        entries[name] = entry
    return {**config, "models": entries}, placement


def named_settings(config: dict[str, Any], key: str, cls: Any, prepared: dict[str, str], required: bool) -> dict:
    """The `models:` or `prms:` block as settings objects by name, with `prepare:` resolved."""
    entries = _require_mapping(config, key) if required else (config.get(key) or {})
    settings = {}
    for name, entry in entries.items():
        where = f"{key}.{name}"
        _check_name(name, where, DOTTED_NAME_PATTERN)
        if key == "prms" and "train" in (entry or {}):  # trained by the workflow: its folder is train_prm's output
            entry = trained_entry(name, entry, where)
        else:
            entry = _prepared_path(entry or {}, where, prepared)
        settings[name] = cls.from_dict({"name": name, **entry}, where)
    return settings


def _samplings(config: dict[str, Any]) -> dict[str, Any]:
    """The `samplings:` block, each entry checked on its own first, so an error names the sampling
    rather than an approach using it."""
    samplings = _require_mapping(config, "samplings")
    for name, entry in samplings.items():
        _check_name(name, f"samplings.{name}", DOTTED_NAME_PATTERN)
        unknown = sorted(set(entry or {}) - set(SAMPLING_KEYS))
        if unknown:
            raise ConfigError(f"samplings.{name}.{unknown[0]}: unknown key (allowed: {', '.join(SAMPLING_KEYS)})")
        SearchSettings.from_dict({"method": "best_of_n", "n": 1, **(entry or {})}, f"samplings.{name}")
    return samplings


def _approach_entry(approach: str, entry: Any) -> tuple[str, list[int], str | None, dict[str, Any]]:
    """(method, the n values, the approach's own PRM or None, search settings without n and prm)."""
    where = f"approaches.{approach}"
    _check_name(approach, where)
    entry = dict(entry or {})
    for key in ("seed", *SAMPLING_KEYS[:2]):
        if key in entry:
            raise ConfigError(f"{where}.{key}: set this under seeds / samplings, not per approach")
    ns = entry.pop("n", None)
    ns = ns if isinstance(ns, list) else [ns]
    if not ns or any(not isinstance(n, int) or isinstance(n, bool) for n in ns):
        raise ConfigError(f"{where}.n: must be a whole number or a list of them, got {ns}")
    return entry.get("method"), ns, entry.pop("prm", None), entry


def _approach_shard_size(search: dict[str, Any], key: str, dataset_shard_size: int) -> int:
    """An approach's `shard_size` (taken out of its search settings), else the dataset's: e.g. Best-of-N
    at n = 256 in shards of 100 problems, one engine start per 100, while beam search keeps 25."""
    size = search.pop("shard_size", None)
    if size is None:
        return dataset_shard_size
    if not isinstance(size, int) or isinstance(size, bool):
        raise ConfigError(f"{key}: must be a whole number of problems, got {size!r}")
    require_at_least(size, 1, key)
    return size


def _approach_runs(
    approach: str, method: str, ns: list[int], prm: Any, prm_key: str, prms: dict[str, PRMSettings]
) -> list[tuple[str, int, str | None]]:
    """(run id, n, in-search PRM) for each run of one approach and model: Best-of-N and DVTS once at
    their largest n, beam search and particle filtering once per n; guided run ids end in `.{prm}`
    (`prm_key`: the config key that named the PRM, for errors)."""
    where = f"approaches.{approach}"
    if method not in GUIDED_METHODS:
        return [(approach, max(ns), None)]
    if prm is None:
        raise ConfigError(f"{where}.prm: {method} needs a PRM (set `search_prm` or `{where}.prm`)")
    search_prm = _prm_name(prm, prm_key, prms)
    if method in ONE_RUN_PER_N:
        return [(f"{approach}-n{n}.{search_prm}", n, search_prm) for n in sorted(set(ns))]
    return [(f"{approach}.{search_prm}", max(ns), search_prm)]
