"""Several graders on one run: an accuracy column per grader, and where they disagree.

`sal evaluate --graders default,sal,math-verify` grades every completion with each grader once
(sal_core.evaluation.graders) and computes every vote at every n for each, on the same subsamples.
The metrics keep the first grader's rows and gain one `accuracy_<grader>` column per grader; with
`--grader-files PREFIX` it also writes, for an audit:

- `PREFIX.grades.parquet`: per problem, the gold answer and one list of verdicts per grader
  (`correct_<grader>`, one bool per completion, in the merged file's order);
- `PREFIX.accuracy.csv`: accuracy under each grader at each n and vote (all problems);
- `PREFIX.disagreements.csv`: every completion the graders do not all grade alike, with the gold
  answer, each grader's verdict and the answer it read;
- `PREFIX.png`: accuracy against n, a line per grader, a panel per vote.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from sal_core import paths
from sal_core.evaluation.evaluate import compute_metrics
from sal_core.evaluation.graders import column, grade_with
from sal_core.evaluation.grading import MATH_VERIFY, TEXT, html_exponents
from sal_core.evaluation.verdicts import PAD, Verdicts
from sal_core.tables import write_table_atomic, write_text_atomic

#: where the workflow keeps a run's grader files (rule evaluate, when evaluation.graders lists several)
GRADER_FILES = f"{paths.RUN}/graders/{{prm}}"
SUFFIXES = {
    "grades": ".grades.parquet",
    "accuracy": ".accuracy.csv",
    "disagreements": ".disagreements.csv",
    "plot": ".png",
}


def grader_paths(prefix: str) -> dict[str, str]:
    """The four files `--grader-files PREFIX` writes, by kind."""
    return {kind: prefix + suffix for kind, suffix in SUFFIXES.items()}


def compare_graders(frame: pd.DataFrame, graded, rows: pd.DataFrame, keys, options) -> pd.DataFrame:
    """`rows` (the first grader's metrics) with one accuracy column per grader; the audit files when asked."""
    names = options.grader_names()
    verdicts = {names[0]: graded.verdicts}
    rows = rows.copy()
    rows[column(names[0])] = rows["accuracy"]
    for name in names[1:]:
        verdicts[name] = grade_with(name, frame, options.timeout, options.workers, options.progress)
        other = compute_metrics(replace(graded, classes=verdicts[name].classes), keys, options)
        rows[column(name)] = other["accuracy"].to_numpy()
    if options.grader_files:
        write_grader_files(str(options.grader_files), frame, rows, verdicts)
    return rows


def write_grader_files(prefix: str, frame: pd.DataFrame, rows: pd.DataFrame, verdicts: dict[str, Verdicts]) -> None:
    out = grader_paths(prefix)
    Path(out["grades"]).parent.mkdir(parents=True, exist_ok=True)
    write_table_atomic(grades_table(frame, verdicts), out["grades"])
    table = accuracy_by_grader(rows, list(verdicts))
    write_text_atomic(table.to_csv(index=False), out["accuracy"])
    write_text_atomic(disagreements(frame, verdicts).to_csv(index=False), out["disagreements"])
    plot_graders(table, list(verdicts), out["plot"])


def grades_table(frame: pd.DataFrame, verdicts: dict[str, Verdicts]) -> pd.DataFrame:
    """Per problem: its id, gold answer and one list of verdicts per grader, completions in file order."""
    sizes = [len(c) for c in frame["completions"]]
    table = pd.DataFrame({"problem_id": frame["problem_id"].astype(str), "answer": frame["answer"].astype(str)})
    for name, found in verdicts.items():
        correct = found.correct()
        table["correct_" + name.replace("-", "_")] = [correct[p, :size].tolist() for p, size in enumerate(sizes)]
    return table


def accuracy_by_grader(rows: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Accuracy under each grader at each n and vote, over all problems."""
    every = rows[rows["level"] == "all"]
    table = every[["n", "vote", *[column(n) for n in names]]].copy()
    if len(names) > 1:
        values = table[[column(n) for n in names]].to_numpy()
        table["spread"] = values.max(axis=1) - values.min(axis=1)
    return table.sort_values(["vote", "n"]).reset_index(drop=True)


def disagreements(frame: pd.DataFrame, verdicts: dict[str, Verdicts]) -> pd.DataFrame:
    """Every completion the graders grade differently: gold, each grader's verdict and answer read."""
    names = list(verdicts)
    stacked = np.stack([verdicts[n].correct() for n in names])
    valid = next(iter(verdicts.values())).classes != PAD
    differ = (stacked.any(axis=0) & ~stacked.all(axis=0)) & valid
    records = []
    for p, i in zip(*np.nonzero(differ), strict=True):
        record = {"problem_id": str(frame["problem_id"].iloc[p]), "completion": int(i)}
        record["gold"] = str(frame["answer"].iloc[p])
        for k, name in enumerate(names):
            slug = name.replace("-", "_")
            record["correct_" + slug] = bool(stacked[k, p, i])
            record["answer_" + slug] = read_back(verdicts[name].answers[p][i])
        records.append(record)
    columns = ["problem_id", "completion", "gold"]
    for name in names:
        columns += ["correct_" + name.replace("-", "_"), "answer_" + name.replace("-", "_")]
    return pd.DataFrame(records, columns=columns)


def read_back(key: str | None) -> str:
    """The answer a grader read, from its key: a box's content or search-and-learn's extraction as is;
    for a marked text, math-verify's extraction of it (its own signal timeout, in this process: only
    disputed completions get here)."""
    if key is None:
        return ""
    if not key.startswith((TEXT, MATH_VERIFY)):
        return key
    from math_verify import parse

    text = key.removeprefix(MATH_VERIFY) if key.startswith(MATH_VERIFY) else html_exponents(key[len(TEXT) :], False)
    try:
        parsed = parse(text, parsing_timeout=5)
    except Exception:  # noqa: BLE001 - an audit column must not fail the run
        return ""
    return str(parsed[-1]) if parsed else ""


def plot_graders(table: pd.DataFrame, names: list[str], out: str) -> None:
    """Accuracy against n, one line per grader, one panel per vote."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vote_names = list(dict.fromkeys(table["vote"]))
    fig, axes = plt.subplots(1, len(vote_names), figsize=(3.2 * len(vote_names), 3), sharey=True, squeeze=False)
    for ax, vote in zip(axes[0], vote_names, strict=True):
        part = table[table["vote"] == vote]
        for name in names:
            ax.plot(part["n"], part[column(name)], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_title(vote)
        ax.set_xlabel("n")
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(title="grader", fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
