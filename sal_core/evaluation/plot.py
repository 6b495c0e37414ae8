"""Figures from the accuracy table alone (no model needed): accuracy vs n, vs generated tokens, by level.

A line is one approach family + sampling + vote; beam search runs of different n (`beam-n4`,
`beam-n16`, …) form one line. Colour = approach + sampling, line style = vote, shaded band = 95% CI.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sal_core.errors import ShardError  # noqa: E402
from sal_core.evaluation.levels import level_sort_key  # noqa: E402
from sal_core.paths import PLOT_NAMES  # noqa: E402

STYLES = {"majority": ("-", "o"), "weighted": ("--", "s"), "naive": (":", "^"), "pass@k": ((0, (1, 3)), "x")}
NEEDED = ("model", "approach", "sampling", "vote", "level", "n", "accuracy", "ci_low", "ci_high", "mean_tokens")


def _family(approach: str) -> str:
    return re.sub(r"-n\d+", "", str(approach))


def load_accuracy(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise ShardError(f"{path}: accuracy table not found")
    table = pd.read_csv(path, dtype={"level": str, "model": str, "approach": str, "sampling": str})
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise ShardError(f"{path}: not an accuracy table (missing {', '.join(missing)})")
    table["family"] = table["approach"].map(_family) + " / " + table["sampling"].astype(str)
    return table


def _draw(ax, part: pd.DataFrame, x: str, colours: dict[str, tuple]) -> None:
    for (family, vote), line in part.groupby(["family", "vote"], sort=True):
        line = line.sort_values(x)
        style, marker = STYLES.get(vote, ("-.", "d"))
        ax.plot(
            line[x],
            line["accuracy"],
            linestyle=style,
            marker=marker,
            markersize=4,
            color=colours[family],
            label=f"{family} · {vote}",
        )
        ax.fill_between(line[x], line["ci_low"], line["ci_high"], color=colours[family], alpha=0.12, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_ylim(-0.02, 1.02)


def _colours(table: pd.DataFrame) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {family: cmap(i % 10) for i, family in enumerate(sorted(table["family"].unique()))}


def _panels(count: int, rows: int = 1, width: float = 5.5, height: float = 4.2):
    fig, axes = plt.subplots(rows, count, figsize=(width * count + 3.5, height * rows), squeeze=False, sharey=True)
    return fig, axes


def _legend_and_save(fig, axes, out: Path) -> None:
    handles, labels = {}, []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    fig.legend([handles[label] for label in labels], labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 3.4 / fig.get_figwidth(), 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_all(table: pd.DataFrame, outdir: str | Path) -> list[Path]:
    """Write the three figures into `outdir`; returns their paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    overall = table[table["level"] == "all"]
    if overall.empty:
        raise ShardError("accuracy table has no rows with level 'all'")
    colours = _colours(table)
    models = sorted(overall["model"].unique())
    dataset = ", ".join(sorted(table["dataset"].astype(str).unique())) if "dataset" in table else ""
    written = []
    vs_n, vs_tokens, by_level = (f"{name}.png" for name in PLOT_NAMES)
    for name, x, xlabel in (
        (vs_n, "n", "number of generations n (log2)"),
        (vs_tokens, "mean_tokens", "generated tokens per problem (log2)"),
    ):
        fig, axes = _panels(len(models))
        for ax, model in zip(axes[0], models, strict=True):
            part = overall[overall["model"] == model]
            if x == "mean_tokens":
                part = part.dropna(subset=["mean_tokens"])
            _draw(ax, part, x, colours)
            ax.set_title(model)
            ax.set_xlabel(xlabel)
        axes[0, 0].set_ylabel("accuracy")
        fig.suptitle(f"{dataset}: accuracy vs {'n' if x == 'n' else 'generated tokens'} (95% CI bands)")
        _legend_and_save(fig, axes, outdir / name)
        written.append(outdir / name)
    levels = sorted((lv for lv in table["level"].unique() if lv != "all"), key=level_sort_key) or ["all"]
    fig, axes = _panels(len(levels), rows=len(models), width=3.6, height=3.2)
    for r, model in enumerate(models):
        for c, level in enumerate(levels):
            ax = axes[r, c]
            _draw(ax, table[(table["model"] == model) & (table["level"] == level)], "n", colours)
            ax.set_title(f"{model} · level {level}", fontsize=9)
            if r == len(models) - 1:
                ax.set_xlabel("n (log2)")
        axes[r, 0].set_ylabel("accuracy")
    fig.suptitle(f"{dataset}: accuracy by difficulty level")
    _legend_and_save(fig, axes, outdir / by_level)
    written.append(outdir / by_level)
    return written
