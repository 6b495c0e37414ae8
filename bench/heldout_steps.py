"""Benchmark PRMs on held-out arithmetic steps labelled by the verifier (README, "Learn").

ProcessBench (GSM8K, MATH) is far from the one-operation arithmetic the CPU learn loop trains its PRM
on. This reads a finished run of that loop (by default the Best-of-N samples of `learn_cpu.yaml`'s 60
held-out problems), labels every distinct completion's steps with the verifier
(sal_core.learn.verifier_labels) and benchmarks the config's `processbench.prms` on them exactly as
`sal processbench` benchmarks ProcessBench (first step below the threshold, error / correct accuracy,
F1). Run after the workflow, from the repository root:

    snakemake --configfile config/experiments/learn_cpu.yaml
    python bench/heldout_steps.py --config config/experiments/learn_cpu.yaml

Writes <out>/steps.jsonl (the labelled samples), <out>/<prm>.csv and .samples.parquet, and prints the
table; <out> defaults to results/<dataset>/processbench-heldout. ProcessBench's metric hangs on one
threshold (0.5); beside it the script prints a threshold-free one, the AUC (probability that a step the
verifier calls right scores above one it calls false, ties half): over the first steps alone, where
the arithmetic is, and over every step up to and including each sample's first error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sal_core import paths  # noqa: E402
from sal_core.cli.stage_models import SCHEMA, merged  # noqa: E402
from sal_core.learn.processbench import run_processbench  # noqa: E402
from sal_core.learn.verifier_labels import label_completions  # noqa: E402
from sal_core.settings.check import check_config  # noqa: E402
from sal_core.settings.yaml_file import load_yaml  # noqa: E402


def auc(good: list[float], bad: list[float]) -> float:
    """P(a good step outscores a bad one), ties counted half (the Mann-Whitney U over the pairs)."""
    g, b = np.asarray(good)[:, None], np.asarray(bad)[None, :]
    return float((g > b).mean() + 0.5 * (g == b).mean()) if g.size and b.size else float("nan")


def ranking(predicted: pd.DataFrame) -> dict[str, str]:
    """First-step AUC and AUC over every step up to each sample's first error (later steps have no label)."""
    first = {True: [], False: []}
    steps = {True: [], False: []}
    for label, scores in zip(predicted["label"], predicted["scores"], strict=True):
        first[label != 0].append(scores[0])
        for k in range(len(scores) if label == -1 else label + 1):
            steps[k != label].append(scores[k])
    return {
        "first-step AUC": f"{auc(first[True], first[False]):.3f} ({len(first[True])} right, {len(first[False])} false)",
        "step AUC": f"{auc(steps[True], steps[False]):.3f} ({len(steps[True])} right, {len(steps[False])} false)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", nargs="+", default=["config/experiments/learn_cpu.yaml"], help="config file(s)")
    parser.add_argument("--run", default="bon", help="run id whose completions are labelled (default: bon)")
    parser.add_argument("--sampling", default="t0.8")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--prms", nargs="+", help="PRMs to benchmark (default: the config's processbench.prms)")
    parser.add_argument("--threshold", type=float, default=0.5, help="a step scored below this is an error")
    parser.add_argument("--out", help="output folder (default: results/<dataset>/processbench-heldout)")
    args = parser.parse_args(argv)

    grid = check_config(merged([load_yaml(path, "--config") for path in args.config]), SCHEMA)
    dataset = grid.dataset.name
    names = args.prms or (grid.learn.processbench.prms if grid.learn.processbench else sorted(grid.prms))
    files = sorted(
        Path(
            paths.MERGED.format(
                dataset=dataset,
                model=model,
                run=args.run,
                sampling=args.sampling,
                seed=args.seed,
                prm=grid.score_prms[0],
            )
        )
        for model in grid.models
    )
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        parser.error(f"no merged run {', '.join(missing)}: run the workflow first")
    samples, counts = label_completions((pd.read_parquet(f) for f in files), split=dataset)
    out = Path(args.out or f"results/{dataset}/processbench-heldout")
    out.mkdir(parents=True, exist_ok=True)
    samples.to_json(out / "steps.jsonl", orient="records", lines=True)
    print(f"{len(samples)} samples from {', '.join(map(str, files))}: {dict(sorted(counts.items()))}")
    tables = run_processbench(
        [grid.prms[name] for name in names],
        out,
        data=str(out / "steps.jsonl"),
        threshold=args.threshold,
        splits=[dataset],
    )
    table = pd.concat(tables, ignore_index=True)
    table = table[table["split"] == dataset]
    print(table.to_markdown(index=False, floatfmt=".1f"))
    for name in names:
        predicted = pd.read_parquet(out / f"{name}.samples.parquet")
        print(name, ranking(predicted))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
