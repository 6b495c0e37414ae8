"""The compute-optimal figure of one model: accuracy against the generation budget n, a panel per
difficulty estimate (oracle, predicted), the cross-validated compute-optimal curve (95% band) and the
in-sample one over every strategy's own curve, Best-of-N majority and weighted picked out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sal_core.evaluation.optimal import BEST_OF_N, KINDS  # noqa: E402

X_LABEL = "generation budget n (samples; beams for beam search), log scale"


def optimal_figure(
    table: pd.DataFrame, curves: pd.DataFrame, model: str, out: str | Path, baseline: str | None, note: str = ""
) -> None:
    """Write the figure; with `note` (the analysis could not run) the strategies' curves and the note.
    `baseline`: the Best-of-N sampling picked out (default: the reference run's, from the table)."""
    fig, axes = plt.subplots(1, len(KINDS), figsize=(12, 4.4), sharex=True, sharey=True, squeeze=False)
    baseline = baseline or _baseline(table)
    prm = str(table["difficulty_prm"].iloc[0]) if "difficulty_prm" in table and len(table) else None
    for ax, kind in zip(axes[0], KINDS, strict=True):
        _strategies(ax, curves, baseline, prm)
        part = table[(table["difficulty"] == kind) & (table["bin"] == "all") & (table["budget_type"] == "n")]
        part = part.sort_values("budget") if len(part) else part
        if len(part):
            ax.fill_between(part["budget"], part["ci_low"], part["ci_high"], color="black", alpha=0.12, lw=0)
            ax.plot(part["budget"], part["cv_accuracy"], "k-o", lw=2.2, ms=4, label="compute-optimal (2-fold CV)")
            ax.plot(part["budget"], part["in_sample_accuracy"], "k:", lw=1.2, label="in-sample choice (optimistic)")
        ax.set_title(f"{kind} difficulty bins")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    fig.supxlabel(X_LABEL, fontsize=10)
    if note:
        box = {"facecolor": "white", "edgecolor": "firebrick", "alpha": 0.9}
        fig.text(0.4, 0.5, textwrap.fill(note, 70), ha="center", va="center", fontsize=10, color="firebrick", bbox=box)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.8, 0.5), fontsize=8, frameon=False)
    fig.suptitle(f"{model}: compute-optimal strategy by difficulty", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)


def _baseline(table: pd.DataFrame) -> str:
    """The Best-of-N sampling the table compares with (from its reference run)."""
    if "difficulty_run" not in table or table.empty:
        return ""
    return str(table["difficulty_run"].iloc[0]).split("/")[1]


def _strategies(ax, curves: pd.DataFrame, baseline: str, prm: str | None = None) -> None:
    """One thin grey line per strategy; Best-of-N majority and weighted of the baseline in colour, as
    scored by `prm` (the PRM the table compares with; None: any), so each appears once in the legend."""
    colours = {"majority": "tab:blue", "weighted": "tab:orange"}
    for _, part in curves.groupby("label", sort=True):
        part = part.sort_values("n")
        first = part.iloc[0]
        picked = first["method"] == BEST_OF_N and first["vote"] in colours and (first["sampling"] == baseline)
        if picked and (prm is None or first["prm"] == prm):
            paper = f"\nby {first['prm']}\n(the paper's baseline)" if first["vote"] == "weighted" else ""
            name = f"Best-of-N {first['vote']} ({first['sampling']}){paper}"
            ax.plot(part["n"], part["accuracy"], "--s", color=colours[first["vote"]], ms=3, lw=1.4, label=name)
        else:
            ax.plot(part["n"], part["accuracy"], "-", color="0.6", lw=0.7, alpha=0.7)
    ax.plot([], [], "-", color="0.6", lw=0.7, label="each strategy\n(approach / sampling / vote)")
