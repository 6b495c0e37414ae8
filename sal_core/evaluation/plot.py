"""Figures from the accuracy table alone (no model needed), one set per model, built to answer one
question: does a sampling scheme (e.g. hot/cold) beat the baseline sampling, for which approach and n?

Every figure is a grid of small panels: a row per approach family (beam runs of any n are one), a
column per vote, a line per sampling in one colour and marker everywhere (`sampling_styles`), the
legend outside the panels. `sampling_gain` is each sampling's accuracy minus the baseline sampling's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator  # noqa: E402

from sal_core.constants import PASS_AT_K  # noqa: E402
from sal_core.constants import VOTES as ALL_VOTES  # noqa: E402
from sal_core.errors import ConfigError, ShardError  # noqa: E402
from sal_core.evaluation.aggregate import budget_tokens  # noqa: E402
from sal_core.evaluation.levels import level_sort_key, natural_key  # noqa: E402
from sal_core.paths import PLOT_NAMES  # noqa: E402

#: x of accuracy_vs_tokens (aggregate.budget_tokens picks one per model; mean_tokens for older results)
X_TOKENS_LABELS = {
    "compute_tokens": "tokens generated + read by PRMs, per problem (log)",
    "mean_tokens": "tokens of the returned completions, per problem (log)",
}
#: figure names, one PNG each per model: plots/{model}/{figure}.png
FIGURES = PLOT_NAMES
VOTES = (*ALL_VOTES, PASS_AT_K)
#: 12 colours told apart on white (tab10, black, gold); markers differ too, so two cues name a sampling
PALETTE = (*(matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab10").colors), "#000000", "#e6ab02")
MARKERS = ("o", "s", "D", "^", "v", "P", "*", "X", "p", "h", "<", ">")
#: a run's identity apart from its sampling: the rows a gain compares
PAIR_KEYS = ("model", "approach", "method", "prm", "aggregation", "n", "vote", "level")
NEEDED = (*PAIR_KEYS, "sampling", "accuracy", "ci_low", "ci_high", "mean_tokens")
DPI = 100
PANEL = (3.0, 2.3)  # inches per panel; with DPI: readable at the width `snakemake --report` shows
#: inches: left (tick labels + two-line row label), top (title + vote titles), between panels, before the legend
MARGINS = {"left": 1.1, "top": 0.8, "bottom": 0.6, "wspace": 0.15, "hspace": 0.2, "gap": 0.3}
EDGE = 0.06  # inches between the figure's edge and its title or shared x label
STYLE = {
    **{"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 11, "figure.titlesize": 13},
    **{"xtick.labelsize": 10, "ytick.labelsize": 10, "legend.title_fontsize": 11},
}


def family(approach: str) -> str:
    """Approach family: beam search runs of different n (`beam-n4.prm`, `beam-n16.prm`) are one."""
    return re.sub(r"-n\d+", "", str(approach))


def sampling_styles(samplings: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Colour and marker per sampling, assigned in natural name order (t0.9 < t1.0 < t10), so the
    same set of samplings gets the same styles in every figure and every model."""
    names = sorted(set(samplings), key=natural_key)
    return {name: (PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, name in enumerate(names)}


def load_accuracy(path: str | Path) -> pd.DataFrame:
    """Read accuracy.csv of `sal aggregate`; raises ShardError naming a missing file or column."""
    path = Path(path)
    if not path.exists():
        raise ShardError(f"{path}: accuracy table not found")
    table = pd.read_csv(path, dtype={c: str for c in ("level", "model", "approach", "sampling", "prm", "vote")})
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise ShardError(f"{path}: not an accuracy table (missing {', '.join(missing)})")
    if "dataset" in table and table["dataset"].nunique() > 1:
        raise ShardError(f"{path}: several datasets in one table ({', '.join(table['dataset'].unique())})")
    return table


def default_baseline(table: pd.DataFrame) -> str:
    """The first sampling in the table's row order (the CLI default; the workflow passes the config's)."""
    return str(table["sampling"].iloc[0])


def check_baseline(table: pd.DataFrame, baseline: str) -> None:
    samplings = list(dict.fromkeys(table["sampling"].astype(str)))
    if baseline not in samplings:
        raise ConfigError(
            f"baseline sampling {baseline!r} (--baseline-sampling / evaluation.baseline_sampling) is not in the"
            f" accuracy table (samplings: {', '.join(samplings)})"
        )


def _half_width(table: pd.DataFrame) -> pd.Series:
    # the larger side: intervals are clipped to [0, 1] and single-seed ones are percentile intervals
    return np.maximum(table["accuracy"] - table["ci_low"], table["ci_high"] - table["accuracy"])


def sampling_gain(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each row's accuracy minus the baseline sampling's on the same model, approach, PRM, n, vote and level.

    CI of the difference: mean ± √(h_s² + h_b²), the runs' 95% half-widths in quadrature, as if they were
    independent; they share the problems, so it is conservative (docs/evaluation.md, *CI of a gain*).
    Rows with no baseline counterpart are dropped; the baseline's own gain is 0 ± 0.
    """
    check_baseline(table, baseline)
    keys = list(PAIR_KEYS)
    base = table[table["sampling"] == baseline].assign(base_acc=table["accuracy"], base_half=_half_width(table))
    merged = table.merge(base[[*keys, "base_acc", "base_half"]], on=keys, how="inner", validate="many_to_one")
    gain = merged["accuracy"] - merged["base_acc"]
    half = np.sqrt(_half_width(merged) ** 2 + merged["base_half"] ** 2)
    half = half.where(merged["sampling"] != baseline, 0.0)
    return merged.drop(columns=["base_acc", "base_half"]).assign(gain=gain, gain_low=gain - half, gain_high=gain + half)


def _panel_rows(part: pd.DataFrame) -> pd.Series:
    """Row label per table row: the approach family, plus the scoring PRM / aggregation when a model has several."""
    label = part["approach"].map(family)
    for key in ("prm", "aggregation"):
        if part[key].nunique() > 1:
            label = label + " · " + part[key].astype(str)
    return label


def _votes(part: pd.DataFrame) -> list[str]:
    present = set(part["vote"])
    return [v for v in VOTES if v in present] + sorted(present - set(VOTES))


def _grid(rows: list[str], votes: list[str], legend: dict[str, str]) -> tuple[Figure, np.ndarray]:
    """Panels with fixed margins in inches (constrained layout costs seconds per figure with
    shared axes) and room on the right for a legend of `legend`'s labels."""
    (width, height), m = PANEL, MARGINS
    legend_width = 0.8 + 0.095 * max((len(label) for label in legend.values()), default=8)
    fig_w = m["left"] + width * len(votes) + m["wspace"] * (len(votes) - 1) + m["gap"] + legend_width
    plot_h = height * len(rows) + m["hspace"] * (len(rows) - 1)
    fig_h = max(m["top"] + plot_h + m["bottom"], 0.8 + 0.24 * len(legend))
    fig, axes = plt.subplots(len(rows), len(votes), figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(
        left=m["left"] / fig_w,
        right=(fig_w - m["gap"] - legend_width) / fig_w,
        top=1 - m["top"] / fig_h,
        bottom=1 - (m["top"] + plot_h) / fig_h,
        wspace=m["wspace"] / width,
        hspace=m["hspace"] / height,
    )
    for c, vote in enumerate(votes):
        axes[0, c].set_title(vote)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    return fig, axes


def _share(axes: np.ndarray) -> None:
    """Common x and y scales for all panels, set after drawing: sharing while drawing makes every
    band re-scale every panel (seconds per figure)."""
    first = axes.flat[0]
    for ax in axes.flat[1:]:
        ax.sharex(first)
        ax.sharey(first)
    for ax in axes.flat:
        ax.label_outer(remove_inner_ticks=False)
    first.autoscale()


def _clip_accuracy(ax) -> None:
    """Keep the (shared) accuracy axis within [0, 1] plus a little room for the markers."""
    ax.set_ylim(max(ax.get_ylim()[0], -0.02), min(ax.get_ylim()[1], 1.02))


def _label_axes(axes: np.ndarray, rows: list[str], xlabel: str, ylabel: str) -> None:
    for r, row in enumerate(rows):
        axes[r, 0].set_ylabel(f"{row}\n{ylabel}")
    shared_xlabel(axes.flat[0].figure, xlabel)


def shared_xlabel(fig: Figure, xlabel: str) -> None:
    """One x label per figure, centred under the panels (one per panel repeated it and ran together),
    a fixed distance in inches from the bottom: a fraction of a tall figure's height reaches the ticks."""
    pars = fig.subplotpars
    y = EDGE / fig.get_figheight()
    fig.supxlabel(xlabel, x=(pars.left + pars.right) / 2, y=y, va="bottom", fontsize=STYLE["axes.labelsize"])


def figure_title(fig: Figure, title: str) -> None:
    """The title a fixed distance in inches from the top, above the vote titles however tall the figure."""
    fig.suptitle(title, y=1 - EDGE / fig.get_figheight(), va="top")


def _legend_labels(styles: dict, shown: Iterable[str], baseline: str | None = None) -> dict[str, str]:
    """Legend label per drawn sampling, in the styles' (name) order."""
    shown = set(shown)
    return {name: f"{name} (baseline)" if name == baseline else name for name in styles if name in shown}


def _legend(fig: Figure, styles: dict[str, tuple[str, str]], labels: dict[str, str]) -> None:
    """One legend for the whole figure, in the room `_grid` left right of the panels."""
    handles = [plt.Line2D([], [], color=styles[name][0], marker=styles[name][1], linewidth=1.8) for name in labels]
    x = fig.subplotpars.right + MARGINS["gap"] / fig.get_figwidth()
    fig.legend(handles, list(labels.values()), loc="center left", bbox_to_anchor=(x, 0.5), title="sampling")


def _empty(ax) -> None:
    ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center", color="0.5")


def _lines(ax, panel: pd.DataFrame, x: str, y: tuple[str, str, str], styles: dict[str, tuple[str, str]]) -> None:
    """One line per sampling with its CI band; `y` names the value, low and high columns.
    The bands of a panel are one collection: a fill_between per line costs seconds per figure."""
    value, low, high = y
    if panel.empty:
        _empty(ax)
        return
    bands, colours = [], []
    for sampling, line in panel.groupby("sampling", sort=False):
        line = line.sort_values(x)
        colour, marker = styles[sampling]
        ax.plot(line[x], line[value], color=colour, marker=marker, markersize=4.5, linewidth=1.6, gid=sampling)
        xs = line[x].to_numpy(float)
        bands.append(np.column_stack([np.r_[xs, xs[::-1]], np.r_[line[low], line[high].to_numpy()[::-1]]]))
        colours.append(colour)
    alpha = min(0.15, 0.6 / len(bands))  # many overlapping bands stay see-through
    ax.add_collection(PolyCollection(bands, facecolors=colours, alpha=alpha, linewidths=0), autolim=True)


def _log2_ticks(axes: np.ndarray, values: Iterable[float]) -> None:
    ticks = sorted({float(v) for v in values if v > 0})
    first = axes.flat[0]  # the x axes are shared: scale and ticks too
    first.set_xscale("log", base=2)
    first.xaxis.set_major_locator(FixedLocator(ticks))
    first.xaxis.set_minor_locator(NullLocator())
    first.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def _token_ticks(ax) -> None:
    """Log x axis with plain numbers (1,000 not 10³); within a narrow range also 2, 3, 5 × 10^k."""
    plain = FuncFormatter(lambda value, _: f"{value:,.0f}")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plain)
    low, high = ax.get_xlim()
    if high / max(low, 1e-9) < 30:
        ax.xaxis.set_minor_locator(LogLocator(subs=(2, 3, 5)))
        ax.xaxis.set_minor_formatter(plain)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def _check_lines(panel: pd.DataFrame, x: str, where: str) -> None:
    """Two rows of one sampling at one n in a panel: two approaches whose names differ only by `-nN`."""
    if x != "n":
        return  # two runs may spend the same tokens
    dup = panel.duplicated(["sampling", x])
    if dup.any():
        row = panel[dup].iloc[0]
        raise ShardError(f"{where}: two rows for sampling {row['sampling']} at {x} = {row[x]} (same run twice?)")


def _placeholder(title: str, message: str) -> Figure:
    """A figure saying why there is nothing to draw, so every declared file still exists."""
    fig = plt.figure(figsize=(7, 2))
    fig.text(0.5, 0.45, message, ha="center", va="center", color="0.3")
    fig.suptitle(title)
    return fig


def _title(table: pd.DataFrame, model: str, what: str) -> str:
    dataset = str(table["dataset"].iloc[0]) if "dataset" in table and len(table) else ""
    return f"{dataset} · {model}: {what}" if dataset else f"{model}: {what}"


def _line_grid(part: pd.DataFrame, x: str, y: tuple[str, str, str], styles: dict, model: str, legend: dict):
    """Panels of lines per sampling: rows = `part["row"]`, columns = votes; shared scales; the legend."""
    rows, votes = sorted(part["row"].unique(), key=natural_key), _votes(part)
    fig, axes = _grid(rows, votes, legend)
    for r, row in enumerate(rows):
        for c, vote in enumerate(votes):
            panel = part[(part["row"] == row) & (part["vote"] == vote)]
            _check_lines(panel, x, f"{model} {row} {vote}")
            _lines(axes[r, c], panel, x, y, styles)
    _share(axes)
    _legend(fig, styles, legend)
    return fig, axes, rows


def accuracy_figure(table: pd.DataFrame, model: str, x: str = "n", styles: dict | None = None) -> Figure:
    """Accuracy against `x` ("n" or a tokens column): rows = approach families, columns = votes."""
    styles = styles or sampling_styles(table["sampling"])
    part = table[(table["model"] == model) & (table["level"] == "all")].dropna(subset=[x])
    part = part[part[x] > 0].assign(row=_panel_rows(part))  # log axes
    what = "n" if x == "n" else "tokens"
    with plt.rc_context(STYLE):
        if part.empty:
            return _placeholder(_title(table, model, f"accuracy vs {what}"), f"no rows with a positive {x}")
        legend = _legend_labels(styles, part["sampling"])
        fig, axes, rows = _line_grid(part, x, ("accuracy", "ci_low", "ci_high"), styles, model, legend)
        _clip_accuracy(axes.flat[0])
        if x == "n":
            _log2_ticks(axes, part["n"])
            _label_axes(axes, rows, "n, samples per problem (log2)", "accuracy")
        else:
            _token_ticks(axes.flat[0])
            _label_axes(axes, rows, X_TOKENS_LABELS.get(x, x), "accuracy")
        figure_title(fig, _title(table, model, f"accuracy vs {what} (band: 95% CI)"))
    return fig


def gain_figure(table: pd.DataFrame, model: str, baseline: str, styles: dict | None = None) -> Figure:
    """Accuracy minus the baseline sampling's against n, with the conservative CI of `sampling_gain`."""
    styles = styles or sampling_styles(table["sampling"])
    part = table[(table["model"] == model) & (table["level"] == "all")]
    with plt.rc_context(STYLE):
        if baseline not in set(part["sampling"]):
            return _placeholder(_title(table, model, "gain over the baseline"), f"no runs of sampling {baseline}")
        gains = sampling_gain(part.assign(row=_panel_rows(part)), baseline)
        legend = _legend_labels(styles, gains["sampling"], baseline)
        fig, axes, rows = _line_grid(gains, "n", ("gain", "gain_low", "gain_high"), styles, model, legend)
        for ax in axes.flat:
            ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=0)
            for line in ax.get_lines():  # the baseline under the others: a sampling equal to it stays visible
                line.set_zorder(1.9 if line.get_gid() == baseline else line.get_zorder())
        _log2_ticks(axes, part["n"])
        _label_axes(axes, rows, "n, samples per problem (log2)", f"accuracy − {baseline}")
        figure_title(fig, _title(table, model, f"gain over sampling {baseline} (band: 95% CI, conservative)"))
    return fig


def _level_lines(ax, panel: pd.DataFrame, levels: list[str], offsets: dict[str, float], styles: dict) -> None:
    """Per sampling, accuracy at each level (nudged sideways by `offsets`) with CI bars, all bars one collection."""
    if panel.empty:
        _empty(ax)
        return
    bars, colours = [], []
    for sampling, line in panel.groupby("sampling", sort=False):
        line = line.assign(x=line["level"].map(levels.index) + offsets[sampling]).sort_values("x")
        colour, marker = styles[sampling]
        ax.plot(line["x"], line["accuracy"], color=colour, marker=marker, markersize=4.5, linewidth=1.2, gid=sampling)
        for x, low, high in zip(line["x"], line["ci_low"], line["ci_high"], strict=True):
            bars.append([(x, low), (x, high)])
            colours.append(colour)
    ax.add_collection(LineCollection(bars, colors=colours, linewidths=0.9), autolim=True)


def level_figure(table: pd.DataFrame, model: str, styles: dict | None = None) -> Figure:
    """Accuracy per difficulty level at each family's largest n: rows = families, columns = votes."""
    styles = styles or sampling_styles(table["sampling"])
    part = table[table["model"] == model]
    levels = sorted((lv for lv in part["level"].unique() if lv != "all"), key=level_sort_key) or ["all"]
    part = part[part["level"].isin(levels)]
    part = part.assign(row=_panel_rows(part))
    part = part[part["n"] == part.groupby("row")["n"].transform("max")]
    rows, votes = sorted(part["row"].unique(), key=natural_key), _votes(part)
    legend = _legend_labels(styles, part["sampling"])
    offsets = {s: (i - (len(legend) - 1) / 2) * min(0.8 / max(len(legend), 1), 0.15) for i, s in enumerate(legend)}
    with plt.rc_context(STYLE):
        if part.empty:
            return _placeholder(_title(table, model, "accuracy by level"), "no rows for this model")
        fig, axes = _grid(rows, votes, legend)
        for r, row in enumerate(rows):
            largest = int(part.loc[part["row"] == row, "n"].max())
            axes[r, 0].set_ylabel(f"{row} (n = {largest})\naccuracy")
            for c, vote in enumerate(votes):
                panel = part[(part["row"] == row) & (part["vote"] == vote)]
                _level_lines(axes[r, c], panel, levels, offsets, styles)
        _share(axes)
        _clip_accuracy(axes.flat[0])
        axes.flat[0].set_xticks(range(len(levels)), levels)
        axes.flat[0].set_xlim(-0.5, len(levels) - 0.5)  # one level: not zoomed onto the sideways nudges
        shared_xlabel(fig, "difficulty level")
        figure_title(fig, _title(table, model, "accuracy by level at each approach's largest n (bars: 95% CI)"))
        _legend(fig, styles, legend)
    return fig


def model_figures(table: pd.DataFrame, model: str, baseline: str, styles: dict | None = None) -> dict[str, Figure]:
    """The figure set of one model, keyed by FIGURES names."""
    styles = styles or sampling_styles(table["sampling"])
    return {
        "accuracy_vs_n": accuracy_figure(table, model, "n", styles),
        "accuracy_vs_tokens": accuracy_figure(table, model, budget_tokens(table[table["model"] == model]), styles),
        "sampling_gain": gain_figure(table, model, baseline, styles),
        "accuracy_by_level": level_figure(table, model, styles),
    }


def plot_all(table: pd.DataFrame, outdir: str | Path, baseline: str | None = None, dpi: int = DPI) -> list[Path]:
    """Write outdir/{model}/{figure}.png for every model (`plot_files`); `baseline`: the sampling the gain
    figure subtracts (default: the table's first)."""
    if table.empty or not (table["level"] == "all").any():
        raise ShardError("accuracy table has no rows with level 'all'")
    baseline = default_baseline(table) if baseline is None else baseline
    check_baseline(table, baseline)
    styles = sampling_styles(table["sampling"])
    written = []
    for model in sorted(table["model"].unique(), key=natural_key):
        (Path(outdir) / model).mkdir(parents=True, exist_ok=True)
        for name, fig in model_figures(table, model, baseline, styles).items():
            path = Path(outdir) / model / f"{name}.png"
            fig.savefig(path, dpi=dpi)
            plt.close(fig)
            written.append(path)
    return written
