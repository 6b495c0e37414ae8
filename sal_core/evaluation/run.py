"""`sal evaluate` on one merged run: read it, score it under its protocol, add the further graders,
write the metrics (or the per-problem credit). The top of the one-run layer: it picks between the
default protocol (sal_core.evaluation.evaluate), search-and-learn's (sal_protocol) and the graders'
comparison (disagreement), none of which imports another's caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from sal_core.evaluation.credit import frame_credit
from sal_core.evaluation.disagreement import compare_graders
from sal_core.evaluation.evaluate import RUN_KEYS, EvalOptions, compute_metrics, grade_frame, read_run_keys
from sal_core.evaluation.sal_protocol import sal_metrics
from sal_core.tables import read_table, write_table_atomic


def evaluate_file(path: str | Path, overrides: Mapping[str, object | None], options: EvalOptions) -> pd.DataFrame:
    """Read a merged parquet/jsonl run and return its metric rows."""
    path = Path(path)
    keys = read_run_keys(path, overrides)
    frame = read_table(path)
    if options.protocol == "sal":
        return sal_metrics(frame, keys, options, str(path))
    graded = grade_frame(frame, path, options)
    rows = compute_metrics(graded, keys, options)
    if len(options.grader_names()) > 1 or options.grader_files:
        rows = compare_graders(frame, graded, rows, keys, options)
    return rows


def evaluate_run(
    merged: str | Path,
    out: str | Path,
    overrides: Mapping[str, object | None],
    options: EvalOptions,
    recorded: Mapping[str, object | None] | None = None,
) -> pd.DataFrame:
    """`sal evaluate`: the metric rows of one merged run, written atomically to `out` with the run's
    keys (and `recorded` extras such as n and beam width) as parquet metadata."""
    options.validate()
    rows = evaluate_file(merged, overrides, options)
    meta = {k: str(rows[k].iloc[0]) for k in RUN_KEYS} if len(rows) else {}
    meta.update({k: str(v) for k, v in (recorded or {}).items() if v is not None})
    write_table_atomic(rows, out, metadata=meta)
    return rows


def write_credit(
    merged: str | Path, out: str | Path, overrides: Mapping[str, object | None], options: EvalOptions
) -> pd.DataFrame:
    """`sal evaluate --credit OUT`: one run's per-problem credit (sal_core.evaluation.credit), written atomically."""
    options.validate()
    path = Path(merged)
    keys = read_run_keys(path, overrides)
    table = frame_credit(read_table(path), path, keys, options)
    write_table_atomic(table, out, metadata={k: str(keys[k]) for k in RUN_KEYS})
    return table


def summary(rows: pd.DataFrame) -> str:
    """Each vote's accuracy at the largest n over all problems, for the job log."""
    overall = rows[(rows["level"] == "all")].sort_values("n").groupby("vote").tail(1)
    return ", ".join(f"{r.vote}@{r.n}={r.accuracy:.3f}" for r in overall.itertuples())
