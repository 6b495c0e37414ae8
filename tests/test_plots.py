"""sal plot writes exactly the three figures from an accuracy table alone."""

import pandas as pd

from sal_core.cli import main
from sal_core.paths import PLOT_NAMES


def test_plot_writes_the_three_pngs(tmp_path):
    rows = []
    for model in ("small", "big"):
        for approach, n_values in (("bon", [1, 2, 4, 8]), ("beam-n4.p", [4]), ("beam-n8.p", [8])):
            for n in n_values:
                for vote in ("majority", "weighted", "pass@k"):
                    for level in ("all", "1", "2"):
                        acc = 0.3 + 0.05 * n.bit_length() + (0.1 if model == "big" else 0)
                        rows.append(
                            {
                                "dataset": "toy",
                                "model": model,
                                "approach": approach,
                                "method": "best_of_n",
                                "sampling": "hot",
                                "prm": "p",
                                "aggregation": "last",
                                "n": n,
                                "vote": vote,
                                "level": level,
                                "accuracy": acc,
                                "std": 0.01,
                                "num_seeds": 2,
                                "mean_tokens": 50.0 * n,
                                "timeouts": 0,
                                "ci_low": acc - 0.05,
                                "ci_high": acc + 0.05,
                            }
                        )
    table = tmp_path / "accuracy.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    outdir = tmp_path / "plots"
    assert main(["plot", "--accuracy", str(table), "--outdir", str(outdir)]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == sorted(f"{name}.png" for name in PLOT_NAMES)
    for name in (f"{stem}.png" for stem in PLOT_NAMES):
        assert (outdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_names_a_missing_table(tmp_path, capsys):
    assert main(["plot", "--accuracy", str(tmp_path / "nope.csv"), "--outdir", str(tmp_path)]) == 2
    assert "nope.csv" in capsys.readouterr().err
