"""What a finished search grid shows beyond accuracy.csv: the boxed rate, pass@n and how often each
scoring PRM's top pick is right when a right answer is among the completions (README, "Particle
filtering"). Reads a dataset's results folder after the workflow, from the repository root:

    snakemake --configfile config/experiments/particles_cpu.yaml
    python bench/search_readout.py results/arith-particles

Prints two markdown tables:

1. per approach and n: accuracy by majority vote, weighted by each scoring PRM, the search's own
   choice (particle filtering), pass@n, with 95 % intervals (accuracy.csv's), the boxed rate (returned
   completions with a `\\boxed{`, over the run; Best-of-N and DVTS at n = 2, 4: their n = 8 run's)
   and the tokens generated and read by PRMs per problem, from the rows of the scorer sorted last (a
   name with "verifier" in it sorts last: the verifier reads no tokens, so there the PRM reads are the
   in-search PRM's alone; with only model PRMs scoring, the last one's reads are in the figure);
2. per run at its own n (no subsamples): problems with a right answer among the completions, and of
   those, how many each scoring PRM's top pick (`naive`: the highest final-step score) and its weighted
   vote get right.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sal_core.tables import read_metadata  # noqa: E402

BOXED = "\\boxed{"


def cell(row: pd.Series | None) -> str:
    if row is None:
        return "–"
    return f"{row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def accuracy_rows(accuracy: pd.DataFrame, boxed: pd.DataFrame, scorers: list[str]) -> list[dict[str, str]]:
    """Table 1's rows, one per approach and n, in the order accuracy.csv has them."""
    table = accuracy[(accuracy["level"] == "all")]
    rows = []
    for (approach, n), part in table.groupby(["approach", "n"], sort=False):
        by = {(r["prm"], r["vote"]): r for _, r in part.iterrows()}
        first = part.iloc[0]
        quiet = by.get((scorers[-1], "majority"), first)  # spend with the last scorer's reads (the verifier: 0)
        row = {"method": first["method"], "approach": approach, "n": str(n)}
        row["majority"] = cell(by.get((scorers[0], "majority")))
        row |= {f"weighted ({s})": cell(by.get((s, "weighted"))) for s in scorers}
        row["selected"] = cell(by.get((scorers[0], "selected")))
        row["pass@n"] = cell(by.get((scorers[0], "pass@k")))
        row["boxed"] = run_boxed(boxed, approach, int(n))
        row["generated"] = f"{quiet['generated_tokens']:.0f}"
        row["search PRM-read"] = f"{quiet['prm_tokens']:.0f}"
        rows.append(row)
    return rows


def boxed_counts(results: Path) -> pd.DataFrame:
    """Per approach and run n: completions with a boxed answer, and completions (one merged file a run)."""
    rows, seen = [], set()
    for path in sorted(results.glob("*/*/*/seed-*/merged/*.parquet")):
        meta = read_metadata(path)
        if meta["run_id"] in seen:  # the run's merged file for another scoring PRM: the same completions
            continue
        seen.add(meta["run_id"])
        texts = [t for texts in pd.read_parquet(path, columns=["completions"])["completions"] for t in texts]
        rows.append({"approach": meta["approach"], "n": int(meta["n"]), "run": meta["run_id"]})
        rows[-1] |= {"boxed": sum(BOXED in t for t in texts), "completions": len(texts)}
    return pd.DataFrame(rows).set_index(["approach", "n"]).sort_index()


def run_boxed(boxed: pd.DataFrame, approach: str, n: int) -> str:
    """The run's own count at n, else (a subsample of a larger run) the approach's largest run's."""
    if (approach, n) in boxed.index:
        counts = boxed.loc[(approach, n)]
    elif approach in boxed.index.get_level_values(0):
        counts = boxed.loc[approach].iloc[-1]
    else:
        return "–"
    return f"{counts['boxed']} / {counts['completions']}"


def pick_rows(results: Path, scorers: list[str]) -> list[dict[str, str]]:
    """Table 2's rows: each run at its own n, the top pick and weighted vote of every scorer."""
    files = sorted(results.glob("*/*/*/seed-*/credit/*.parquet"))
    credit = pd.concat([pd.read_parquet(p).assign(run=p.parts[-5]) for p in files])
    credit = credit[credit["n"] == credit.groupby(["run", "prm"])["n"].transform("max")]
    rows = []
    for (approach, n), part in credit.groupby(["approach", "n"], sort=False):
        wide = part.pivot_table(index="problem_id", columns=["prm", "vote"], values="credit")
        solvable = wide[(scorers[0], "pass@k")] == 1
        row = {"approach": approach, "n": str(n), "right among": f"{int(solvable.sum())} / {len(wide)}"}
        for scorer in scorers:
            for vote, name in (("naive", "top pick"), ("weighted", "weighted")):
                got = wide.loc[solvable, (scorer, vote)].sum()
                row[f"{name} ({scorer})"] = f"{got:.1f}".removesuffix(".0")
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row[k] for k in head) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a dataset's results folder, e.g. results/arith-particles")
    args = parser.parse_args(argv)
    accuracy_file = args.results / "accuracy.csv"
    if not accuracy_file.is_file():
        parser.error(f"{accuracy_file}: no such file; run the workflow first")
    accuracy = pd.read_csv(accuracy_file)
    scorers = sorted(accuracy["prm"].unique(), key=lambda s: ("verifier" in s, s))
    print(markdown(accuracy_rows(accuracy, boxed_counts(args.results), scorers)))
    print()
    print(markdown(pick_rows(args.results, scorers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
