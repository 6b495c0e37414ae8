"""Where a PRM's stepwise training data comes from, and what identifies it: local files (by their
content) or a Hub dataset (by name, subset and split). Settings-level, so the config can decide a
trained PRM's identity without importing the learn stage (sal_core.learn.stepwise reads the data)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

#: endings that make a dataset argument a local file even before it exists
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


def is_local(dataset: str | Sequence[str]) -> bool:
    """A dataset argument names local files when it is a list, or a path that exists or ends like a
    data file; otherwise the Hub."""
    if not isinstance(dataset, str):
        return True
    return Path(dataset).exists() or dataset.endswith(LOCAL_SUFFIXES)


def fingerprint(dataset: str | Sequence[str], split: str, subset: str | None) -> str:
    """What identifies the data: local files' content hash, or the Hub name, subset and split."""
    if not is_local(dataset):
        return f"hub:{dataset}:{subset}:{split}"
    files = [dataset] if isinstance(dataset, str) else list(dataset)
    digest = hashlib.sha256()
    for name in files:
        if not Path(name).is_file():
            return f"missing:{name}"
        with open(name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"
