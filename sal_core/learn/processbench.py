"""ProcessBench (Zheng et al., 2024, arXiv 2412.06559): can a PRM find the earliest wrong step?

Each sample is a problem, a solution cut into `steps`, and `label`: the index of the earliest wrong
step, or -1 when every step is correct. A PRM's prediction is the first step whose score is below
`threshold` (0.5, as the official PRM evaluation), or -1 when none is. Per split the metric is the
paper's: accuracy on the erroneous samples (prediction == label), accuracy on the correct samples
(prediction == -1), and F1 = their harmonic mean; the summary is the mean F1 over the splits. All
in percent. (The huggingface/ProcessBench fork's TRL script reports a precision/recall/F1 of its
own instead; the numbers are not comparable.)

Data: `builtin` (a fixed 50-per-split subset shipped in sal_core/builtin/processbench/, see
bench/make_learn_data.py), a local folder of {split}.json files (../shared/data/processbench), a
local .jsonl/.json/.parquet file with a `split` column, or the Hub dataset Qwen/ProcessBench.
Every sample of a split is scored in one batched `PRM.score` call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from sal_core.constants import PROCESSBENCH_SPLITS
from sal_core.errors import DatasetError
from sal_core.job_devices import job_gpus_held, prm_gpus
from sal_core.prm.base import STEP_SEPARATOR, split_steps
from sal_core.settings.endpoint import Servers

SPLITS = PROCESSBENCH_SPLITS
HUB_DATASET = "Qwen/ProcessBench"
BUILTIN = "builtin"
AVERAGE = "average"
#: the chart `sal processbench` draws beside the tables
PLOT_FILE = "processbench.png"
TABLE_COLUMNS = ["prm", "split", "threshold", "n_error", "n_correct", "error_acc", "correct_acc", "f1"]


def _read_builtin() -> pd.DataFrame:
    with resources.as_file(resources.files("sal_core.builtin") / "processbench" / "subset.jsonl") as path:
        return pd.read_json(path, lines=True, dtype=False)


def _read_local(path: Path, splits: Sequence[str]) -> pd.DataFrame:
    if path.is_dir():
        frames = [
            pd.read_json(path / f"{split}.json", dtype=False).assign(split=split)
            for split in splits
            if (path / f"{split}.json").is_file()
        ]
        if not frames:
            raise DatasetError(f"processbench data: {path} has none of {', '.join(f'{s}.json' for s in splits)}")
        return pd.concat(frames, ignore_index=True)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
    if "split" not in frame.columns:
        frame["split"] = path.stem
    return frame


def _read_hub(name: str, splits: Sequence[str]) -> pd.DataFrame:
    import datasets

    frames = []
    for split in splits:
        try:
            frames.append(datasets.load_dataset(name, split=split).to_pandas().assign(split=split))
        except Exception as err:  # network, missing split: datasets raises many types
            raise DatasetError(f"processbench data: cannot load {name!r} split {split!r}: {err}") from err
    return pd.concat(frames, ignore_index=True)


def load_processbench(
    data: str = BUILTIN, splits: Sequence[str] | None = None, limit: int | None = None
) -> pd.DataFrame:
    """Samples (split, id, problem, steps, label) of the chosen splits, checked; `limit` keeps the first N per split."""
    wanted = list(splits or SPLITS)
    if data == BUILTIN:
        frame = _read_builtin()
    elif Path(data).exists():
        frame = _read_local(Path(data), wanted)
    elif "/" in data and not data.startswith((".", "/")):
        frame = _read_hub(data, wanted)
    else:
        raise DatasetError(f"processbench data: {data} is not 'builtin', an existing path or a Hub dataset")
    missing = [c for c in ("split", "problem", "steps", "label") if c not in frame.columns]
    if missing:
        raise DatasetError(f"processbench data {data}: missing column(s) {', '.join(missing)}")
    frame = frame[frame["split"].isin(wanted)]
    if limit is not None:
        frame = frame.groupby("split", sort=False).head(limit)
    if frame.empty:
        raise DatasetError(f"processbench data {data}: no samples in split(s) {', '.join(wanted)}")
    if "id" not in frame.columns:
        frame = frame.assign(id=[f"{s}-{i}" for s, i in zip(frame["split"], range(len(frame)), strict=True)])
    frame = frame.assign(steps=[list(s) for s in frame["steps"]], label=frame["label"].astype(int))
    for row in frame.itertuples():
        if not row.steps or not -1 <= row.label < len(row.steps):
            raise DatasetError(f"processbench sample {row.id}: label {row.label} for {len(row.steps)} steps")
    return frame[["split", "id", "problem", "steps", "label"]].reset_index(drop=True)


def as_completion(steps: Sequence[str]) -> str:
    """The steps as one completion that `split_steps` cuts back into exactly these steps: blank lines
    inside a step become single newlines, and an empty step becomes "…"."""
    cleaned = [re.sub(r"\n\s*\n", "\n", step).strip() or "…" for step in steps]
    completion = STEP_SEPARATOR.join(cleaned)
    assert len(split_steps(completion)) == len(steps)
    return completion


def earliest_error(step_scores: Sequence[float], threshold: float) -> int:
    """Index of the first step scored below `threshold`, or -1 when every step passes."""
    return next((k for k, score in enumerate(step_scores) if score < threshold), -1)


def processbench_metrics(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """One split's error accuracy, correct accuracy and their harmonic mean F1, in percent (NaN without samples)."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    error = [p == lab for lab, p in zip(labels, predictions, strict=True) if lab != -1]
    correct = [p == -1 for lab, p in zip(labels, predictions, strict=True) if lab == -1]
    error_acc = 100.0 * sum(error) / len(error) if error else math.nan
    correct_acc = 100.0 * sum(correct) / len(correct) if correct else math.nan
    total = error_acc + correct_acc
    f1 = 2 * error_acc * correct_acc / total if total > 0 else (0.0 if total == 0 else math.nan)
    return {
        "n_error": len(error),
        "n_correct": len(correct),
        "error_acc": error_acc,
        "correct_acc": correct_acc,
        "f1": f1,
    }


def summary_table(samples: pd.DataFrame, prm_name: str, threshold: float) -> pd.DataFrame:
    """One row per split (in SPLITS order) plus an `average` row holding the mean F1 over the splits."""
    order = [s for s in SPLITS if s in set(samples["split"])] + sorted(set(samples["split"]) - set(SPLITS))
    rows = []
    for split in order:
        part = samples[samples["split"] == split]
        rows.append(
            {
                "prm": prm_name,
                "split": split,
                "threshold": threshold,
                **processbench_metrics(part["label"].tolist(), part["prediction"].tolist()),
            }
        )
    mean_f1 = sum(r["f1"] for r in rows) / len(rows)
    rows.append(
        {
            "prm": prm_name,
            "split": AVERAGE,
            "threshold": threshold,
            "n_error": sum(r["n_error"] for r in rows),
            "n_correct": sum(r["n_correct"] for r in rows),
            "error_acc": math.nan,
            "correct_acc": math.nan,
            "f1": mean_f1,
        }
    )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def predict(prm: Any, samples: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """`samples` with each one's step scores and predicted earliest error; one PRM call per split."""
    scores: list[list[float] | None] = [None] * len(samples)
    for split in dict.fromkeys(samples["split"]):
        index = samples.index[samples["split"] == split].tolist()
        problems = [samples.at[i, "problem"] for i in index]
        got = prm.score(problems, [[as_completion(samples.at[i, "steps"])] for i in index])
        for i, per_problem in zip(index, got, strict=True):
            scores[i] = [float(x) for x in per_problem[0]]
    predictions = [earliest_error(s or [], threshold) for s in scores]
    return samples.assign(scores=scores, prediction=predictions)


def plot_processbench(tables: Sequence[pd.DataFrame], out: str | Path) -> Path:
    """Grouped bars: F1 per split and the average, one bar per PRM (one table each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.concat(tables, ignore_index=True)
    splits = list(dict.fromkeys(frame["split"]))
    width = 0.8 / len(tables)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(splits), 3.6))
    for k, table in enumerate(tables):
        f1 = table.drop_duplicates("split").set_index("split")["f1"].reindex(splits)
        offsets = [i + (k - (len(tables) - 1) / 2) * width for i in range(len(splits))]
        bars = ax.bar(offsets, f1.fillna(0), width, label=str(table["prm"].iloc[0]))
        ax.bar_label(bars, labels=[f"{v:.1f}" if v == v else "–" for v in f1], fontsize=7)
    ax.set_xticks(range(len(splits)), splits)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 105)
    thresholds = sorted(set(frame["threshold"]))
    ax.set_title(f"ProcessBench F1 (threshold {', '.join(f'{t:g}' for t in thresholds)})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
    return out


def run_processbench(
    prm_settings: Sequence[Any],
    out_dir: str | Path,
    data: str = BUILTIN,
    threshold: float = 0.5,
    splits: Sequence[str] | None = None,
    limit: int | None = None,
    plot: str | Path | None = "",
    servers: Servers | None = None,
) -> list[pd.DataFrame]:
    """Benchmark each PRM: writes <out_dir>/<prm>.csv (the table) and <prm>.samples.parquet (per-sample
    scores and predictions), then the chart comparing them all to `plot` ("": <out_dir>/processbench.png;
    None: no chart)."""
    from sal_core.prm import load_prm
    from sal_core.tables import write_table_atomic, write_text_atomic

    if not 0 < threshold < 1:
        raise DatasetError(f"--threshold: must be in (0, 1), got {threshold}")
    samples = load_processbench(data, splits, limit)  # bad data fails before any model loads
    out_dir = Path(out_dir)
    tables = []
    neediest = max(prm_settings, key=lambda prm: prm_gpus(prm)[0], default=None)
    with job_gpus_held(None, neediest):  # locally locked for the job, before anything touches CUDA
        for settings in prm_settings:
            settings.validate("prm")
            predicted = predict(load_prm(settings, servers), samples, threshold)
            table = summary_table(predicted, settings.name, threshold)
            samples_file = out_dir / f"{settings.name}.samples.parquet"
            write_table_atomic(predicted.drop(columns=["problem", "steps"]), samples_file)
            write_text_atomic(table.to_csv(index=False, float_format="%.2f"), out_dir / f"{settings.name}.csv")
            tables.append(table)
    if plot is not None:
        plot_processbench(tables, plot or out_dir / PLOT_FILE)
    return tables
