"""sal plot: one figure set per model, a panel per approach family × vote, a line per sampling in a fixed colour,
and a gain figure against an explicit baseline sampling, from a synthetic accuracy table of a hot/cold sweep's shape."""

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from sal_core.cli import main
from sal_core.evaluation.plot import (
    FIGURES,
    VOTES,
    accuracy_figure,
    family,
    gain_figure,
    model_figures,
    sampling_gain,
    sampling_styles,
)
from sal_core.paths import plot_files

MODELS = [f"model-{size}b" for size in (0.5, 1.5, 3, 7, 14)]
SAMPLINGS = [f"t{t / 10:.1f}" for t in range(1, 13)]  # t0.1 … t1.2, as in the hot/cold sweep
# (approach, method, n values) as `sal aggregate` writes them: Best-of-N and DVTS evaluated at several n,
# beam search one run per n under one approach name
APPROACHES = [
    ("bon", "best_of_n", [1, 2, 4, 8, 16]),
    ("beam", "beam_search", [4, 16]),
    ("dvts", "dvts", [4, 8, 16]),
]
FAMILIES = ["beam", "bon", "dvts"]
LEVELS = ["all", "1", "2", "3", "4", "5"]


def synthetic_accuracy(models=MODELS, samplings=SAMPLINGS) -> pd.DataFrame:
    """An accuracy table of `sal aggregate`'s shape: every model × approach × sampling × n × vote × level."""
    rng = np.random.default_rng(0)
    rows = []
    for model, (approach, method, ns), (s, sampling), vote, level in itertools.product(
        models, APPROACHES, enumerate(samplings), VOTES, LEVELS
    ):
        for n in ns:
            acc = 0.2 + 0.04 * math.log2(n) + 0.01 * s + (0.0 if level == "all" else -0.05 * int(level) + 0.15)
            acc = float(np.clip(acc + rng.normal(0, 0.01), 0.01, 0.95))
            rows.append(
                {
                    "dataset": "math500",
                    **{"model": model, "approach": approach, "method": method, "sampling": sampling},
                    **{"prm": "prm", "aggregation": "last", "n": n, "vote": vote, "level": level},
                    **{"accuracy": acc, "std": 0.01, "num_seeds": 3, "ci_low": acc - 0.04, "ci_high": acc + 0.05},
                    **{"mean_tokens": 300.0 * n * (1 + s / 12), "timeouts": 0},
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_accuracy()


@pytest.fixture(scope="module")
def figures(table):
    figs = model_figures(table, MODELS[1], "t0.8")
    yield figs
    for fig in figs.values():
        plt.close(fig)


def _grid(fig):
    """The panels as rows of axes (the legend is a figure legend, not an axis)."""
    axes = fig.axes
    columns = sum(1 for ax in axes if ax.get_title())
    return [axes[i : i + columns] for i in range(0, len(axes), columns)]


def _sampling_lines(ax):
    """The lines drawn for a sampling (gid = its name), not the reference lines."""
    return [line for line in ax.get_lines() if line.get_gid()]


def test_every_figure_has_one_panel_per_approach_family_and_vote(figures):
    assert set(figures) == set(FIGURES)
    for name, fig in figures.items():
        grid = _grid(fig)
        assert [ax.get_title() for ax in grid[0]] == list(VOTES), name
        assert [row[0].get_ylabel().split("\n")[0].split(" (n = ")[0] for row in grid] == FAMILIES, name
        assert all(len(row) == len(VOTES) for row in grid), name
        for ax in fig.axes:
            assert 1 <= len(_sampling_lines(ax)) <= 12, name
        fig.draw_without_rendering()  # runs the layout: the legend lies right of the last column
        assert len(fig.legends) == 1
        assert fig.legends[0].get_window_extent().x0 >= grid[0][-1].get_window_extent().x1, name


def test_a_sampling_has_one_colour_and_marker_in_every_figure_and_model(table, figures):
    styles = sampling_styles(table["sampling"])
    assert len({colour for colour, _ in styles.values()}) == 12
    other = accuracy_figure(table, MODELS[4], "n")
    for fig in [*figures.values(), other]:
        for ax in fig.axes:
            for line in _sampling_lines(ax):
                assert (to_hex(line.get_color()), line.get_marker()) == styles[line.get_gid()]
    plt.close(other)
    # the order is by name (t0.9 before t1.0), whatever order the table lists samplings in
    assert sampling_styles(reversed(SAMPLINGS)) == styles
    assert list(styles) == SAMPLINGS


def test_gain_figure_rows_are_approaches_and_its_baseline_line_is_zero(table):
    fig = gain_figure(table, MODELS[0], "t0.5")
    grid = _grid(fig)
    assert [row[0].get_ylabel().split("\n")[0] for row in grid] == FAMILIES
    for ax in fig.axes:
        baseline = [line for line in _sampling_lines(ax) if line.get_gid() == "t0.5"]
        assert len(baseline) == 1 and np.all(np.asarray(baseline[0].get_ydata()) == 0.0)
    assert "t0.5 (baseline)" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)


def test_gain_is_the_difference_with_half_widths_in_quadrature(table):
    gains = sampling_gain(table, "t0.1")
    assert len(gains) == len(table)
    key = (gains["model"] == MODELS[2]) & (gains["approach"] == "bon") & (gains["n"] == 4)
    key &= (gains["vote"] == "weighted") & (gains["level"] == "all")
    row, base = gains[key & (gains["sampling"] == "t1.2")].iloc[0], gains[key & (gains["sampling"] == "t0.1")].iloc[0]
    source = table.set_index(["model", "approach", "n", "vote", "level", "sampling"])
    acc_s = source.loc[(MODELS[2], "bon", 4, "weighted", "all", "t1.2"), "accuracy"]
    acc_b = source.loc[(MODELS[2], "bon", 4, "weighted", "all", "t0.1"), "accuracy"]
    assert row["gain"] == pytest.approx(acc_s - acc_b)
    assert row["gain_high"] - row["gain"] == pytest.approx(math.hypot(0.05, 0.05))  # larger side of each CI
    assert (base["gain"], base["gain_low"], base["gain_high"]) == (0.0, 0.0, 0.0)


def test_beam_runs_named_by_n_are_one_family(table):
    assert family("beam-n4.prm") == family("beam-n16.prm") == "beam.prm" and family("bon") == "bon"
    named = table.assign(
        approach=table["approach"] + np.where(table["approach"] == "beam", "-n" + table["n"].astype(str), "")
    )
    fig = accuracy_figure(named, MODELS[0], "n")
    assert [row[0].get_ylabel().split("\n")[0] for row in _grid(fig)] == FAMILIES
    plt.close(fig)


@pytest.mark.parametrize("column", ["compute_tokens", "mean_tokens"])
def test_tokens_figure_uses_all_the_compute_when_recorded(table, column):
    """accuracy_vs_tokens charges every generated and PRM-read token; tables without those counts
    (older results) fall back to the returned completions' tokens."""
    if column == "compute_tokens":
        table = table.assign(compute_tokens=table["mean_tokens"] * 3 + 7)
    figures = model_figures(table, MODELS[0], SAMPLINGS[0])
    fig = figures["accuracy_vs_tokens"]
    xs = {float(x) for ax in fig.axes for line in _sampling_lines(ax) for x in line.get_xdata()}
    assert xs <= set(table[column].astype(float)) and len(xs) > 12
    assert "PRMs" in fig.get_supxlabel() or column == "mean_tokens"
    assert all(ax.get_xlabel() == "" for ax in fig.axes)  # one label for the figure, not one per panel
    for figure in figures.values():
        plt.close(figure)


def test_sal_plot_writes_the_figure_set_of_every_model(tmp_path, table):
    path = tmp_path / "accuracy.csv"
    table.to_csv(path, index=False)
    outdir = tmp_path / "plots"
    assert main(["plot", "--accuracy", str(path), "--outdir", str(outdir), "--dpi", "20"]) == 0
    written = sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*.png"))
    assert written == sorted(plot_files(MODELS)) and len(written) == 5 * len(FIGURES)
    for name in written:
        assert (outdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_without_the_baseline_or_token_counts_still_gets_every_file(tmp_path):
    table = synthetic_accuracy(models=["a", "b"], samplings=["t0.8", "hot-cold"])
    table = table[(table["model"] == "a") | (table["sampling"] != "t0.8")]  # b never ran the baseline
    table.loc[table["model"] == "a", "mean_tokens"] = float("nan")  # a has no token counts
    path = tmp_path / "accuracy.csv"
    table.to_csv(path, index=False)
    outdir = tmp_path / "plots"
    assert main(["plot", "--accuracy", str(path), "--outdir", str(outdir), "--baseline-sampling", "t0.8"]) == 0
    assert sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*.png")) == sorted(plot_files(["a", "b"]))


def test_a_baseline_sampling_not_in_the_table_is_one_clear_error(tmp_path, table, capsys):
    path = tmp_path / "accuracy.csv"
    table[table["model"] == MODELS[0]].to_csv(path, index=False)
    args = ["plot", "--accuracy", str(path), "--outdir", str(tmp_path / "plots"), "--baseline-sampling", "hot-cold"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "'hot-cold'" in err and "t0.1" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "plots").exists()


def test_plot_names_a_missing_table(tmp_path, capsys):
    assert main(["plot", "--accuracy", str(tmp_path / "nope.csv"), "--outdir", str(tmp_path)]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_title_and_x_label_clear_the_panels_however_tall_the_figure(table):
    """particles_cpu.yaml's figure has 14 rows: a title and x label placed at a fraction of the
    figure's height sat on the vote titles and the bottom row's tick labels."""
    tall = pd.concat([table.assign(approach=table["approach"] + f"-{k}") for k in range(5)], ignore_index=True)
    for fig in (accuracy_figure(table, MODELS[1], "n"), accuracy_figure(tall, MODELS[1], "n")):
        renderer = fig.canvas.get_renderer()
        fig.draw(renderer)
        grid = _grid(fig)
        title = fig._suptitle.get_window_extent(renderer)
        assert len(grid) in (len(FAMILIES), 5 * len(FAMILIES))
        assert title.y0 >= max(ax.title.get_window_extent(renderer).y1 for ax in grid[0])
        label = fig._supxlabel.get_window_extent(renderer)
        ticks = [t.get_window_extent(renderer).y0 for ax in grid[-1] for t in ax.get_xticklabels() if t.get_text()]
        assert label.y1 <= min(ticks)
        plt.close(fig)
