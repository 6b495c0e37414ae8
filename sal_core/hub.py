"""Hub checkpoints on offline compute nodes: jobs load models only from the local Hub cache.

`sal stage-models` (sal_core.pipeline.stage_models) fetches every Hub checkpoint a grid needs once, on
the submitting host, into the Hub cache (HF_HUB_CACHE, else HF_HOME/hub); a job then resolves a model
entry's `path` (and `revision`) to that cached snapshot folder with `checkpoint` and loads the folder,
so no job asks the Hub anything, and one that finds its model missing fails in one line naming the
entry and the staging command. The `sal` entry point sets the Hub's offline switches (`go_offline`)
for the steps that run as jobs before huggingface_hub is imported, so no library call (a chat template,
remote code, a tokenizer file) reaches out either; docs/offline.md.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from sal_core.errors import ModelError

#: what a Hub model name looks like (`org/model`); anything else is a local path
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
#: a full commit hash, which names a snapshot folder itself
COMMIT = re.compile(r"[0-9a-f]{40}")
#: the Hub's own offline switches (huggingface_hub and transformers read them when first imported)
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
#: where vLLM keeps its compile caches (torch.compile, inductor, triton) unless VLLM_CACHE_ROOT says
#: otherwise: inside the project folder, which Slurm jobs share, so shard jobs reuse one compilation
VLLM_CACHE = ".cache/vllm"
#: the command that stages a config's models (one line in every "not staged" error)
STAGE_COMMAND = "sal stage-models --config CONFIG"
#: weight index files: every shard they list must be staged
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: a ModelSettings or PRMSettings (settings import this module, not the other way round)
_Entry = TypeVar("_Entry", bound=Any)


def offline_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables a job runs with: the Hub's offline switches and vLLM's cache folder, each unless
    `env` already sets it (HF_HUB_OFFLINE=0 lets jobs reach the Hub again, e.g. for a Hub dataset
    nobody staged; models still load from the stage only)."""
    wanted = {**OFFLINE, "VLLM_CACHE_ROOT": str(Path(VLLM_CACHE).absolute())}
    return {key: env.get(key, value) for key, value in wanted.items()}


def go_offline(env: MutableMapping[str, str] = os.environ) -> None:
    """Apply `offline_env` to `env` (this process's): a job step calls it before anything imports
    huggingface_hub or transformers, which read the switches once, when imported."""
    env.update(offline_env(env))


def is_hub_name(path: str) -> bool:
    """Whether `path` names a Hub model (`org/model`) rather than a local folder."""
    return not Path(path).expanduser().exists() and HUB_NAME.fullmatch(path) is not None


def hub_cache() -> str:
    """The Hub cache folder staged models live in (HF_HUB_CACHE, else HF_HOME/hub), read now."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE


def _weights_complete(folder: Path) -> bool:
    """Whether a snapshot folder holds its weights: every shard its index lists, or one weights file."""
    for index in WEIGHT_INDEXES:
        if (folder / index).is_file():
            try:
                shards = set(json.loads((folder / index).read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError):
                return False
            return all((folder / shard).is_file() for shard in shards)
    return any((folder / name).is_file() for name in WEIGHT_FILES) or any(folder.glob("*.safetensors"))


def snapshot_path(repo: str, revision: str | None = None) -> Path | None:
    """The snapshot folder of `repo` at `revision` (branch, tag or commit; None: main) in the Hub
    cache's documented layout (models--org--name/refs/<branch>, snapshots/<commit>), or None. Read by
    hand rather than through huggingface_hub.try_to_load_from_cache, whose import (0.6 s) every parse
    of the workflow, on every Slurm job, would pay."""
    from huggingface_hub import constants

    folder = Path(hub_cache()) / constants.REPO_ID_SEPARATOR.join(["models", *repo.split("/")])
    revision = revision or constants.DEFAULT_REVISION
    commit = revision
    if not COMMIT.fullmatch(revision):
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    snapshot = folder / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def staged_folder(repo: str, revision: str | None = None) -> Path | None:
    """The cached snapshot of `repo` at `revision` when it holds a config and complete weights (what
    `sal stage-models` leaves), else None. Reads the local cache only."""
    folder = snapshot_path(repo, revision)
    if folder is None or not (folder / "config.json").is_file():
        return None
    return folder if _weights_complete(folder) else None


def not_staged(what: str, repo: str, revision: str | None) -> str:
    """The one line for a Hub model that is not in the cache: which entry, where we looked, what to run."""
    at = f" at revision {revision}" if revision else ""
    return (
        f"{what}: {repo}{at} is not staged in the Hub cache {hub_cache()} (jobs run offline); "
        f"stage it on a host with internet: {STAGE_COMMAND}"
    )


def checkpoint(path: str, revision: str | None, what: str) -> str:
    """The folder to load a model entry from: `path` itself when local, else the staged snapshot of the
    Hub model `path` at `revision`; ModelError naming `what` (e.g. `models.qwen.path`) when not staged."""
    if not is_hub_name(path):
        return path
    folder = staged_folder(path, revision)
    if folder is None:
        raise ModelError(not_staged(what, path, revision))
    return str(folder)


def staged(settings: _Entry, key: str) -> _Entry:
    """A model or PRM entry (`key`: models / prms) with `path` replaced by the folder `checkpoint`
    finds, so every loader reads the staged snapshot; the entry itself when its path is local."""
    if not settings.path:
        return settings
    folder = checkpoint(settings.path, settings.revision, f"{key}.{settings.name}.path")
    return settings if folder == settings.path else replace(settings, path=folder)
