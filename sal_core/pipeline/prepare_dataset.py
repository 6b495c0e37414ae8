"""Datasets: load problems from the built-in set, a local file or the Hub, normalise their fields, split shards.

Every dataset becomes a table with the columns `problem_id`, `problem`, `answer`, `level`, so the
rest of the pipeline never sees dataset-specific field names. The workflow snapshots that table to
`results/{dataset}/problems.parquet` when it is first parsed: jobs on compute nodes then read the
snapshot and never need the network, and its row count decides the shards.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from sal_core.constants import PROBLEM_COLUMNS
from sal_core.errors import DatasetError
from sal_core.settings.dataset import DatasetSettings
from sal_core.tables import read_table, write_table_atomic

_LOCAL_READERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
#: bytes in one line of a .jsonl dataset: a problem is text, so a longer line is a broken file
MAX_LINE_BYTES = 1 << 20


def builtin_datasets() -> list[str]:
    """Names of the problem sets shipped inside the package."""
    return sorted(
        p.name[: -len(".jsonl")] for p in resources.files("sal_core.builtin").iterdir() if p.name.endswith(".jsonl")
    )


def _read_raw(settings: DatasetSettings) -> pd.DataFrame:
    if settings.source == "builtin":
        if settings.path not in builtin_datasets():
            raise DatasetError(
                f"dataset.path: no built-in dataset {settings.path!r} (built-in: {', '.join(builtin_datasets())})"
            )
        with resources.as_file(resources.files("sal_core.builtin") / f"{settings.path}.jsonl") as path:
            return pd.read_json(path, lines=True, dtype=False)
    if settings.source == "local":
        path = Path(settings.path)
        if not path.is_file():
            raise DatasetError(f"dataset.path: local file {path} does not exist")
        kind = _LOCAL_READERS.get(path.suffix)
        if kind is None:
            raise DatasetError(f"dataset.path: {path} must end in one of {', '.join(_LOCAL_READERS)}")
        try:
            if path.suffix == ".jsonl":
                return read_jsonl(path)
            if kind == "json":
                return pd.read_json(path, dtype=False)
            if kind == "parquet":
                return pd.read_parquet(path)
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except ValueError as err:
            raise DatasetError(f"dataset.path: cannot read {path}: {err}") from err
    return _read_hub(settings)


def read_jsonl(path: Path) -> pd.DataFrame:
    """One JSON object per line; DatasetError naming the file and line of a line that is not one, is
    over MAX_LINE_BYTES, or holds a NUL character (pandas reports neither file nor line)."""
    import json

    rows = []
    with open(path, "rb") as handle:
        for number, line in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), 1):
            where = f"dataset.path: {path} line {number}"
            if len(line) > MAX_LINE_BYTES:
                raise DatasetError(f"{where}: longer than {MAX_LINE_BYTES} bytes")
            if b"\0" in line or b"\\u0000" in line:
                raise DatasetError(f"{where}: holds a NUL character")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
                raise DatasetError(f"{where}: not JSON ({err})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{where}: not a JSON object")
            rows.append(row)
    return pd.DataFrame(rows)


def _read_hub(settings: DatasetSettings) -> pd.DataFrame:
    """Load a Hub dataset through `datasets` (cached by it; needs the network on first use)."""
    import datasets  # imported here: slow to import, and only Hub datasets need it

    try:
        table = datasets.load_dataset(settings.path, settings.subset, split=settings.split)
    except Exception as err:  # datasets raises many types: network, missing split, bad name
        raise DatasetError(
            f"dataset.path: cannot load Hub dataset {settings.path!r} (subset {settings.subset!r}, "
            f"split {settings.split!r}): {err.__class__.__name__}: {err}"
        ) from err
    return table.to_pandas()


def gsm8k_final_answer(answer: str) -> str:
    """GSM8K answers end with `#### 72`: keep only the number, without thousands separators."""
    if "####" not in answer:
        raise ValueError("no '####' marker")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def normalise(raw: pd.DataFrame, settings: DatasetSettings) -> pd.DataFrame:
    """Map the dataset's own columns onto problem_id / problem / answer / level, checking every row."""
    fields = settings.fields
    where = f"dataset {settings.name!r}"
    for key in ("problem", "answer"):
        column = getattr(fields, key)
        if column not in raw.columns:
            raise DatasetError(
                f"{where}: no column {column!r} for dataset.fields.{key} (columns: {', '.join(map(str, raw.columns))})"
            )
    if settings.limit is not None:
        raw = raw.iloc[: settings.limit]
    if raw.empty:
        raise DatasetError(f"{where}: has no rows")
    if fields.id and fields.id in raw.columns:
        ids = raw[fields.id].astype(str)
    else:
        ids = pd.Series([str(i) for i in range(len(raw))], index=raw.index)
    levels = raw[fields.level].astype(str) if fields.level and fields.level in raw.columns else None
    answers = []
    for row, value in enumerate(raw[fields.answer]):
        text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()
        if settings.answer_format == "gsm8k":
            try:
                text = gsm8k_final_answer(text)
            except ValueError as err:
                raise DatasetError(f"{where}: row {row} answer has no final '#### answer' ({err})") from err
        if not text:
            raise DatasetError(f"{where}: row {row} has an empty {fields.answer!r}")
        answers.append(text)
    problems = raw[fields.problem].astype(str).str.strip()
    empty = problems.eq("") | raw[fields.problem].isna()
    if empty.any():
        raise DatasetError(f"{where}: row {int(empty.to_numpy().nonzero()[0][0])} has an empty {fields.problem!r}")
    duplicated = ids.duplicated()
    if duplicated.any():
        first = int(duplicated.to_numpy().nonzero()[0][0])
        raise DatasetError(f"{where}: row {first} repeats problem id {ids.iloc[first]!r} ({fields.id!r})")
    return pd.DataFrame(
        {
            "problem_id": ids.to_list(),
            "problem": problems.to_list(),
            "answer": answers,
            "level": levels.to_list() if levels is not None else [None] * len(raw),
        }
    )


def load_problems(settings: DatasetSettings) -> pd.DataFrame:
    """The dataset as a normalised, validated problems table."""
    return normalise(_read_raw(settings), settings)


def shard_ranges(num_problems: int, shard_size: int) -> list[tuple[int, int]]:
    """Half-open [start, end) row ranges covering all problems; the last shard may be shorter."""
    return [(start, min(start + shard_size, num_problems)) for start in range(0, num_problems, shard_size)]


def snapshot_problems(settings: DatasetSettings, path: str | Path) -> int:
    """Write the normalised problems to `path` unless an up-to-date snapshot is there; return its rows.

    The snapshot records the settings it came from, so a changed dataset config rewrites it (and
    Snakemake reruns what depends on it), while an unchanged one is only read for its length.
    """
    path = Path(path)
    if path.exists():
        try:
            footer = pq.read_metadata(path)  # one footer read gives the fingerprint and the row count
            if (footer.metadata or {}).get(b"dataset_fingerprint") == settings.fingerprint().encode():
                return footer.num_rows
        except Exception:  # a corrupt snapshot is simply rebuilt
            pass
    problems = load_problems(settings)
    write_table_atomic(problems, path, metadata={"dataset_fingerprint": settings.fingerprint()})
    return len(problems)


def read_problems(path: str | Path, start: int | None = None, end: int | None = None) -> pd.DataFrame:
    """Rows [start, end) of a problems snapshot, checking the range lies inside it."""
    problems = read_table(path)
    missing = [c for c in PROBLEM_COLUMNS if c not in problems.columns]
    if missing:
        raise DatasetError(f"{path}: not a problems table (missing {', '.join(missing)})")
    if start is None and end is None:
        return problems
    start = 0 if start is None else start
    end = len(problems) if end is None else end
    if not 0 <= start < end <= len(problems):
        raise DatasetError(f"{path}: shard {start}-{end} is outside its {len(problems)} problems")
    return problems.iloc[start:end].reset_index(drop=True)
