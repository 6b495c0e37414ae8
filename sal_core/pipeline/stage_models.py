"""`sal stage-models`: fetch the Hub checkpoints a grid needs, once, on a host with internet.

Every `models:` and `prms:` entry whose `path` is a Hub name (policies, PRMs, the tokenizers of served
models and of vLLM-pooling PRMs), and every `train.base_model` given as a Hub name, is fetched with
huggingface_hub into the Hub cache (HF_HUB_CACHE, else HF_HOME/hub) at the entry's `revision` (the
default branch when none is given). Jobs then load the snapshot folder offline (sal_core.hub).

What is fetched: the files at the repository's top level (configs, tokenizer files, remote code,
generation config) and one copy of the weights: the safetensors files (only those the weight index
names, when there is one), else the PyTorch .bin files. Sub-folders (Meta's `original/`, ONNX exports)
and other formats (GGUF, TensorFlow, Flax) are left out, as vLLM's own download leaves them out.
The sizes come from the Hub's file metadata before anything is downloaded; a gated model asked for
without a token, a missing repository or revision, is one line naming the config key.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sal_core.errors import ModelError
from sal_core.hub import STAGE_COMMAND, hub_cache, is_hub_name, snapshot_path, staged_folder
from sal_core.settings.grid import Grid

log = logging.getLogger(__name__)

#: weight formats no engine of this project loads
OTHER_FORMATS = (".gguf", ".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".pth", ".pt", ".ckpt", ".mlmodel", ".npz")
SAFETENSORS_INDEX = "model.safetensors.index.json"
GB = 1e9


def size(count: int) -> str:
    """Bytes in the unit that reads best (the Hub's decimal units: GB, MB, kB)."""
    for unit, scale in (("GB", GB), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count} B"


@dataclass
class HubModel:
    """One Hub checkpoint at one revision, and the config keys that use it."""

    repo: str
    revision: str | None
    keys: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.revision}" if self.revision else self.repo


@dataclass
class StagePlan:
    """What staging one checkpoint means: its commit, the files chosen with their sizes, those cached."""

    model: HubModel
    commit: str
    sizes: dict[str, int]
    cached: set[str]
    gated: bool

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    @property
    def to_fetch(self) -> int:
        return sum(size for name, size in self.sizes.items() if name not in self.cached)


def hub_models(grid: Grid) -> list[HubModel]:
    """Every Hub checkpoint the grid loads (each once per revision), in config order."""
    found: dict[tuple[str, str | None], HubModel] = {}

    def add(path: str, revision: str | None, key: str) -> None:
        if path and is_hub_name(path):
            found.setdefault((path, revision), HubModel(path, revision)).keys.append(key)

    for name, model in grid.models.items():
        add(model.path, model.revision, f"models.{name}.path")
    for name, prm in grid.prms.items():
        add(prm.path, prm.revision, f"prms.{name}.path")
    for name, trained in grid.learn.trained.items():
        add(trained.settings.base_model, None, f"prms.{name}.train.base_model")
    return list(found.values())


def unstaged(grid: Grid) -> list[HubModel]:
    """The grid's Hub checkpoints not (completely) in the Hub cache; reads the local cache only."""
    return [model for model in hub_models(grid) if staged_folder(model.repo, model.revision) is None]


def unstaged_line(grid: Grid, config_files: Sequence[str] = ()) -> str | None:
    """One line naming the grid's Hub models that are not staged and the command that stages them
    (None when all are): what the workflow reports when it is parsed."""
    missing = unstaged(grid)
    if not missing:
        return None
    named = ", ".join(f"{m.keys[0]} ({m.label})" for m in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    command = STAGE_COMMAND.replace("CONFIG", " ".join(config_files) or "CONFIG")
    return (
        f"{named}{more}: not staged in the Hub cache {hub_cache()}, and jobs load Hub models offline; "
        f"stage them on a host with internet: {command} (docs/offline.md)"
    )


def select_files(sizes: dict[str, int], index_shards: Callable[[], set[str]]) -> dict[str, int]:
    """The files of a repository to stage (module docstring): top-level files, one copy of the weights.
    `index_shards` reads the safetensors index (called only when the repository has one)."""
    top = {n: s for n, s in sizes.items() if "/" not in n and not n.startswith(".") and not n.endswith(OTHER_FORMATS)}
    if any(name.endswith(".safetensors") for name in top):
        shards = index_shards() if SAFETENSORS_INDEX in top else None
        return {
            n: s
            for n, s in top.items()
            if not (n.startswith("pytorch_model") and ".bin" in n)
            and (shards is None or not n.endswith(".safetensors") or n in shards)
        }
    return top


def plan_model(api: Any, model: HubModel) -> StagePlan:
    """The Hub's file metadata for `model` (one request; two with a weight index), as a StagePlan."""
    from huggingface_hub import hf_hub_download

    info = api.model_info(model.repo, revision=model.revision, files_metadata=True)
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}

    def index_shards() -> set[str]:
        index = hf_hub_download(model.repo, SAFETENSORS_INDEX, revision=info.sha, cache_dir=hub_cache())
        with open(index) as handle:
            return set(json.load(handle)["weight_map"].values())

    chosen = select_files(sizes, index_shards)
    snapshot = snapshot_path(model.repo, info.sha)
    cached = {name for name in chosen if snapshot is not None and (snapshot / name).is_file()}
    return StagePlan(model, info.sha, chosen, cached, bool(info.gated))


def hub_error(model: HubModel, err: Exception, token: bool) -> ModelError:
    """One line for a Hub error about `model`: gated, missing, or unreachable, naming its config key."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"{model.keys[0]}: {model.repo}"
    if isinstance(err, GatedRepoError):
        return ModelError(gated_line(model, token))
    if isinstance(err, RevisionNotFoundError):
        return ModelError(f"{where}: revision {model.revision} does not exist on the Hub; fix the entry's revision")
    if isinstance(err, RepositoryNotFoundError):
        hint = "check the name" if token else "check the name, or set HF_TOKEN if it is private"
        return ModelError(f"{where}: no such model on the Hub (or no access); {hint}")
    return ModelError(f"{where}: the Hub did not answer ({err.__class__.__name__}: {str(err).splitlines()[0]})")


def gated_line(model: HubModel, token: bool) -> str:
    """The one line for a gated model: without a token, or with one that has not been granted access."""
    from huggingface_hub import constants

    page = f"{constants.ENDPOINT}/{model.repo}"
    if token:
        return f"{model.keys[0]}: {model.repo} is gated and your token has no access; accept its terms at {page}"
    return (
        f"{model.keys[0]}: {model.repo} is gated: accept its terms at {page}, then give a token "
        "(HF_TOKEN in the environment, or `hf auth login`) and run this again"
    )


def network_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises when nothing answers: OSError, and httpx2's transport errors (no OSError)."""
    try:
        import httpx2

        return (OSError, httpx2.TransportError)
    except ImportError:  # a huggingface_hub on requests raises OSErrors
        return (OSError,)


def unreachable(err: BaseException) -> str:
    """The one line for a Hub that does not answer."""
    from huggingface_hub import constants

    reason = str(err).splitlines()[0] if str(err) else ""
    return (
        f"the Hub at {constants.ENDPOINT} does not answer ({err.__class__.__name__}: {reason}); staging needs internet"
    )


def report(plans: Sequence[StagePlan], free: int) -> list[str]:
    """The size report printed before anything is downloaded: per checkpoint, then in all."""
    lines = [f"Hub cache {hub_cache()}: {size(free)} free"]
    for plan in plans:
        keys = ", ".join(plan.model.keys)
        lines.append(
            f"  {plan.model.label} ({keys}): {len(plan.sizes)} files, {size(plan.total)}, "
            f"{size(plan.to_fetch)} to fetch"
        )
    total, fetch = sum(p.total for p in plans), sum(p.to_fetch for p in plans)
    lines.append(f"in all: {size(total)}, {size(fetch)} to fetch")
    return lines


def plan_grid(grid: Grid) -> tuple[list[StagePlan], list[str]]:
    """A StagePlan per Hub checkpoint of the grid, and one error line per checkpoint that cannot be
    staged (gated without a token, missing, unreachable): all found before anything is downloaded."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = get_token() is not None
    api = HfApi()
    plans, errors = [], []
    for model in hub_models(grid):
        try:
            plan = plan_model(api, model)
        except HfHubHTTPError as err:
            errors.append(str(hub_error(model, err, token)))
            continue
        except network_errors() as err:  # no answer at all: one line says it for every model
            return [], [unreachable(err)]
        if plan.gated and not token and plan.to_fetch:
            errors.append(gated_line(model, token=False))
        plans.append(plan)
    return plans, errors


def fetch(plan: StagePlan) -> None:
    """Download the plan's files into the Hub cache (progress bars from huggingface_hub), recording the
    revision's commit, and check that the snapshot is complete."""
    from huggingface_hub import get_token, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    model = plan.model
    try:
        snapshot_download(model.repo, revision=model.revision, allow_patterns=sorted(plan.sizes), cache_dir=hub_cache())
    except HfHubHTTPError as err:
        raise hub_error(model, err, get_token() is not None) from err
    except network_errors() as err:
        raise ModelError(f"{model.keys[0]}: {model.label}: {unreachable(err)}") from err
    if staged_folder(model.repo, model.revision) is None:
        raise ModelError(f"{model.keys[0]}: {model.label} has no config.json or incomplete weights after download")


def stage_grid(grid: Grid, dry_run: bool, say: Callable[[str], None] = print) -> list[str]:
    """Stage the grid's Hub checkpoints (only report them with `dry_run`); the error lines, if any.
    Nothing is downloaded when any checkpoint cannot be staged or the disk lacks the room."""
    import shutil
    from pathlib import Path

    from huggingface_hub import constants

    if not hub_models(grid):
        say("no Hub models in this config: nothing to stage")
        return []
    if constants.HF_HUB_OFFLINE:
        return [
            "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set here: staging needs the Hub; unset it for this command"
        ]
    plans, errors = plan_grid(grid)
    cache = Path(hub_cache())
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    for line in report(plans, free) if plans else []:
        say(line)
    needed = sum(p.to_fetch for p in plans)
    if needed > free:
        errors.append(
            f"the Hub cache {cache} has {size(free)} free, {size(needed)} are needed: "
            "free space, or point HF_HOME (or HF_HUB_CACHE) at a larger shared disk"
        )
    if errors or dry_run:
        return errors
    for plan in plans:
        if plan.to_fetch or staged_folder(plan.model.repo, plan.model.revision) is None:
            fetch(plan)
        say(f"staged {plan.model.label}: {staged_folder(plan.model.repo, plan.model.revision)}")
    return []


def dry_run_requested(argv: Sequence[str]) -> bool:
    """Whether a snakemake command line asks for a dry run (-n, also combined as -np, --dry-run):
    Snakemake tells a Snakefile nothing of it while it is parsed (workflow.dryrun is set later)."""
    return any(arg in ("--dry-run", "--dryrun") or re.fullmatch(r"-[A-Za-z]{0,4}n[A-Za-z]{0,4}", arg) for arg in argv)
