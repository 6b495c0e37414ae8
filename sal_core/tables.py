"""Reading and writing result tables: atomic parquet writes, and a reader that accepts parquet or jsonl.

Writes go to a temporary file in the same folder and are renamed into place, so a killed job never
leaves a file that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sal_core.errors import ShardError


def _umask() -> int:
    """The process's umask, read without setting it where Linux tells it (setting it races with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_target(path: Path, mode: int | None = None) -> tuple[int, str]:
    """A temporary file next to `path`, with the mode a plain open() would give (0666 less the umask:
    results are as readable as any file the user writes), or `mode` (mkstemp alone gives 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask() if mode is None else mode)
    return fd, tmp


def write_table_atomic(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    path: str | Path,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write rows as parquet at `path` via temp file + rename; `metadata` goes into the schema."""
    path = Path(path)
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(text: str, path: str | Path, mode: int | None = None) -> Path:
    """Write a text file (csv, json) via temp file + rename (`mode`: see _atomic_target)."""
    path = Path(path)
    fd, tmp = _atomic_target(path, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_if_changed(text: str, path: str | Path) -> Path:
    """`text` written (atomically, folders made) only when the file does not already hold it: a file
    the workflow writes on every parse keeps its mtime while nothing changed."""
    path = Path(path)
    try:
        if path.read_text() == text:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(text, path)


def write_lines_if_changed(lines: list[str], path: str | Path) -> Path:
    """One line per item, written only when the content differs (write_text_if_changed)."""
    return write_text_if_changed("".join(f"{line}\n" for line in lines), path)


def quarantine(path: Path) -> Path:
    """Move a corrupt file aside (`<name>.corrupt`), so Snakemake sees it missing and recomputes it."""
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target


def read_table(path: str | Path, columns: list[str] | None = None, quarantine_corrupt: bool = False) -> pd.DataFrame:
    """Read a parquet or jsonl results file; a corrupt or truncated file raises ShardError naming it.

    With `quarantine_corrupt`, a corrupt file is also moved aside, so that the next run recomputes
    it instead of failing on it again; intact files are never touched.
    """
    path = Path(path)
    if not path.exists():
        raise ShardError(f"{path}: file not found")
    try:
        if path.suffix in {".jsonl", ".json"}:
            with path.open() as handle:
                frame = pd.DataFrame([json.loads(line) for line in handle if line.strip()])
            return frame[columns] if columns else frame
        return pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowException, OSError, ValueError, KeyError) as err:
        message = f"{path}: unreadable or corrupt ({err.__class__.__name__}: {err})"
        if quarantine_corrupt:
            message += f"; moved aside to {quarantine(path).name}, rerun the workflow to recompute it"
        raise ShardError(message) from err


def read_metadata(path: str | Path) -> dict[str, str]:
    """The key/value metadata a parquet file was written with (empty for files without any)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError) as err:
        raise ShardError(f"{path}: unreadable or corrupt ({err})") from err
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"pandas")}


def read_checked(path: str | Path, needed: Sequence[str], kind: str) -> pa.Table:
    """One `kind` file (metrics, credit) as an Arrow table: ShardError naming it when it is unreadable,
    corrupt, or lacks a `needed` column."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ShardError(f"{path}: unreadable or corrupt {kind} file ({err})") from err
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise ShardError(f"{path}: not a {kind} file (missing {', '.join(missing)})")
    return table


def concat_runs(tables: list[pa.Table], kind: str) -> pd.DataFrame:
    """Tables of several runs as one frame, `seed` as text (how the run keys compare); ShardError when
    there are none."""
    if not tables:
        raise ShardError(f"no {kind} files given")
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame["seed"] = frame["seed"].astype(str)
    return frame
