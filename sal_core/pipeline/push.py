"""Upload a merged result to the Hugging Face Hub as one config of a dataset repository.

One config per run and PRM (`math500--qwen2.5-1.5b--bon--t0.8--seed-0--rlhflow-8b`), so a whole
grid lives in one repository and each run loads on its own with `load_dataset(repo, name)`.
search-and-learn instead pushes each run (and each chunk of it) as a revision, i.e. a branch, of one
repository per model and method, `{model}-{approach}-prm-completions` (src/sal/utils/data.py,
src/sal/config.py). Off by default (`push.enabled`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sal_core.errors import SalError
from sal_core.tables import read_metadata, read_table, write_text_atomic

#: the run keys (from the merged file's metadata) that name its Hub config, in order
CONFIG_NAME_KEYS = ("dataset", "model", "run_id", "sampling", "seed", "prm")


def config_name(metadata: dict[str, str]) -> str:
    """The Hub config name of a merged file, from the run keys in its metadata."""
    missing = [key for key in CONFIG_NAME_KEYS if not metadata.get(key)]
    if missing:
        raise SalError(f"merged file lacks run key(s) {', '.join(missing)} needed to name its Hub config")
    parts = [metadata[k] if k != "seed" else f"seed-{metadata[k]}" for k in CONFIG_NAME_KEYS]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "--".join(parts))


def to_hub_dataset(merged_path: str | Path):
    """The merged table as a `datasets.Dataset`, with the run keys in its description."""
    import datasets

    frame = read_table(merged_path)
    dataset = datasets.Dataset.from_pandas(frame, preserve_index=False)
    dataset.info.description = json.dumps(read_metadata(merged_path), sort_keys=True)
    return dataset


def push_merged(merged_path: str | Path, repo: str, private: bool, receipt: str | Path) -> str:
    """Push one merged file; write a small receipt (repo, config, commit) so Snakemake knows it is done."""
    name = config_name(read_metadata(merged_path))
    dataset = to_hub_dataset(merged_path)
    try:
        commit = dataset.push_to_hub(repo, config_name=name, private=private)
    except Exception as err:  # network, authentication, permissions: all the user's to fix
        raise SalError(
            f"push of {merged_path} to {repo} (config {name}) failed: {err.__class__.__name__}: {err}"
        ) from err
    write_text_atomic(
        json.dumps({"repo": repo, "config": name, "commit": str(getattr(commit, "oid", commit))}), receipt
    )
    return name
