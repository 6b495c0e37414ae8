"""The experiment grid: every run a config asks for, validated before any job starts.

The Snakefile imports this module at parse time. A run is one model × approach (× n for beam
search) × sampling × seed; its `run_id` is the `{approach}` wildcard value. Best-of-N and DVTS run
once at their largest n (evaluation subsamples smaller n); beam search runs once per n. For methods
guided by a PRM, the PRM's name is part of the run id, so two in-search PRMs never share a path.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sal_core.config import GenerateJob, ModelSettings, PRMSettings, SearchSettings
from sal_core.data import DatasetSettings
from sal_core.errors import ConfigError

#: approach names carry no dot: the run id appends `.{prm}` to them
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"
#: models, PRMs and samplings may (`qwen2.5-1.5b`, `t0.8`)
DOTTED_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
PREPARED_SOURCES = ("smollm2-135m-instruct", "tiny-random")
PREPARED_ROOT = "resources/models"
GUIDED_METHODS = ("beam_search", "dvts")
SAMPLING_KEYS = ("temperatures", "temperature_ratios", "top_p")


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

    def keys(self, dataset: str, prm: str) -> dict[str, Any]:
        """Run keys recorded in merged results and metrics."""
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
    score_prms: list[str]
    runs: list[Run]
    evaluation: dict[str, Any]

    def __post_init__(self) -> None:
        self._by_key = {(r.model, r.run_id, r.sampling, r.seed): r for r in self.runs}

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
        if "path" not in entry:
            raise ConfigError(f"{where}.path: missing (a Hub name or a local folder)")
        check_model_path(str(entry["path"]), f"{where}.path")
        return entry
    if source not in PREPARED_SOURCES:
        raise ConfigError(f"{where}.prepare: {source!r} is not one of {', '.join(PREPARED_SOURCES)}")
    folder = f"{PREPARED_ROOT}/{source}"
    if entry.setdefault("path", folder) != folder:
        raise ConfigError(f"{where}.path: a prepared model lives in {folder}; drop `path` or `prepare`")
    prepared[folder] = source
    return entry


HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


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
    models = {}
    for name, entry in _require_mapping(config, "models").items():
        _check_name(name, f"models.{name}", DOTTED_NAME_PATTERN)
        models[name] = ModelSettings.from_dict(
            {"name": name, **_prepared_path(entry or {}, f"models.{name}", prepared)}, f"models.{name}"
        )
    prms = {}
    for name, entry in (config.get("prms") or {}).items():
        _check_name(name, f"prms.{name}", DOTTED_NAME_PATTERN)
        prms[name] = PRMSettings.from_dict(
            {"name": name, **_prepared_path(entry or {}, f"prms.{name}", prepared)}, f"prms.{name}"
        )
    score_prms = [_prm_name(p, "score_prms", prms) for p in config.get("score_prms") or []]
    if not score_prms:
        raise ConfigError("score_prms: name at least one PRM to score completions with")
    default_search_prm = config.get("search_prm")

    samplings = _require_mapping(config, "samplings")
    for name, entry in samplings.items():
        _check_name(name, f"samplings.{name}", DOTTED_NAME_PATTERN)
        unknown = sorted(set(entry or {}) - set(SAMPLING_KEYS))
        if unknown:
            raise ConfigError(f"samplings.{name}.{unknown[0]}: unknown key (allowed: {', '.join(SAMPLING_KEYS)})")
        # checked on its own first, so an error names the sampling rather than an approach using it
        SearchSettings.from_dict({"method": "best_of_n", "n": 1, **(entry or {})}, f"samplings.{name}")
    seeds = config.get("seeds") or [0]

    runs: list[Run] = []
    for approach, entry in _require_mapping(config, "approaches").items():
        where = f"approaches.{approach}"
        _check_name(approach, where)
        entry = dict(entry or {})
        for key in ("seed", *SAMPLING_KEYS[:2]):
            if key in entry:
                raise ConfigError(f"{where}.{key}: set this under seeds / samplings, not per approach")
        method = entry.get("method")
        ns = entry.pop("n", None)
        ns = ns if isinstance(ns, list) else [ns]
        if not ns or any(not isinstance(n, int) or isinstance(n, bool) for n in ns):
            raise ConfigError(f"{where}.n: must be a whole number or a list of them, got {entry.get('n', ns)}")
        search_prm = entry.pop("prm", default_search_prm)
        if method in GUIDED_METHODS:
            if search_prm is None:
                raise ConfigError(f"{where}.prm: {method} needs a PRM (set `search_prm` or `{where}.prm`)")
            search_prm = _prm_name(
                search_prm,
                f"{where}.prm" if "prm" in (config["approaches"][approach] or {}) else "search_prm",
                prms,
            )
            run_ns = sorted(set(ns)) if method == "beam_search" else [max(ns)]
        else:
            search_prm = None
            run_ns = [max(ns)]
        for n in run_ns:
            run_id = approach
            if method == "beam_search":
                run_id += f"-n{n}"
            if search_prm:
                run_id += f".{search_prm}"
            for sampling, sampling_entry in samplings.items():
                for seed in seeds:
                    search = SearchSettings.from_dict({**entry, **(sampling_entry or {}), "n": n, "seed": seed}, where)
                    for model_name, model in models.items():
                        job = GenerateJob(model=model, search=search, prm=prms[search_prm] if search_prm else None)
                        runs.append(Run(model_name, approach, run_id, method, n, sampling, int(seed), search_prm, job))
    ids = {(r.model, r.run_id, r.sampling, r.seed) for r in runs}
    if len(ids) != len(runs):
        raise ConfigError("approaches: two approaches produce the same run name; rename one")
    return Grid(dataset, models, prms, prepared, score_prms, runs, _evaluation(config, list(samplings)))


def _evaluation(config: dict[str, Any], samplings: list[str]) -> dict[str, Any]:
    """`evaluation` with `baseline_sampling` resolved (default: the first sampling listed)."""
    evaluation = dict(config.get("evaluation") or {})
    baseline = evaluation.setdefault("baseline_sampling", samplings[0])
    if baseline not in samplings:
        raise ConfigError(
            f"evaluation.baseline_sampling: {baseline!r} is not a sampling defined under samplings"
            f" (defined: {', '.join(samplings)})"
        )
    return evaluation


def to_json(obj: Any) -> str:
    """Compact, key-sorted JSON of a settings object or dict: stable, so Snakemake's params check is exact."""
    data = asdict(obj) if hasattr(obj, "__dataclass_fields__") else obj
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
