"""Missing work of a grid, by run: Snakemake's own dry run, grouped by the run folder of each job.

`snakemake -n --quiet rules` counts the jobs left by rule; for a sweep of thousands of jobs a person
also wants them by run (which model, approach, sampling and seed still has shards to generate).
Snakemake cannot group by run, so `sal missing` runs `snakemake -n` (or reads its saved output) and
groups the one line it prints per job (`Job 12: generate results/.../completions.parquet`, the
rules' `message`) by the run folder of that file: the DAG is Snakemake's, never re-derived here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter

from sal_core import paths
from sal_core.errors import SalError

JOB_LINE = re.compile(r"^Job \d+: (\w+) (\S+)$", re.M)
#: the row for jobs outside any run (tables, plots, model folders)
WHOLE_GRID = "(whole grid)"
RULE_ORDER = ("prepare_model", "generate", "score", "merge", "evaluate", "push", "aggregate", "plot")


def planned_jobs(dry_run_output: str) -> list[tuple[str, str]]:
    """(rule, first output) of each job a `snakemake -n` output lists."""
    return JOB_LINE.findall(dry_run_output)


def run_of(path: str) -> str:
    """`model/run/sampling/seed-N` of a result path, or WHOLE_GRID for a file outside every run."""
    keys = paths.run_keys(path)
    if keys is None:
        return WHOLE_GRID
    return "/".join((keys["model"], keys["run"], keys["sampling"], f"seed-{keys['seed']}"))


def by_run(jobs: list[tuple[str, str]]) -> dict[str, Counter[str]]:
    """Jobs counted by rule for each run (runs sorted, the whole-grid row last)."""
    counts: dict[str, Counter[str]] = {}
    for rule, output in jobs:
        counts.setdefault(run_of(output), Counter())[rule] += 1
    return dict(sorted(counts.items(), key=lambda item: (item[0] == WHOLE_GRID, item[0])))


def format_table(counts: dict[str, Counter[str]]) -> str:
    """One row per run with missing work, one column per rule, and a total row."""
    if not counts:
        return "Nothing to be done: no job is missing."
    rules = sorted({rule for row in counts.values() for rule in row}, key=_rule_position)
    width = max(len(run) for run in [*counts, "total"])
    lines = [f"{'run':<{width}}  " + "  ".join(f"{rule:>{len(rule)}}" for rule in rules)]
    totals: Counter[str] = Counter()
    for run, row in counts.items():
        totals.update(row)
        lines.append(f"{run:<{width}}  " + "  ".join(f"{row.get(rule, 0) or '':>{len(rule)}}" for rule in rules))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{totals[rule]:>{len(rule)}}" for rule in rules))
    runs = sum(run != WHOLE_GRID for run in counts)
    lines.append(f"{runs} run(s) with missing work, {sum(totals.values())} job(s)")
    return "\n".join(lines)


def _rule_position(rule: str) -> tuple[int, str]:
    return (RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER), rule)


def dry_run(snakemake_args: list[str]) -> str:
    """The output of `snakemake -n` with these arguments (its job lines are on stderr)."""
    if "--quiet" in snakemake_args or "-q" in snakemake_args:
        raise SalError("snakemake -n: drop --quiet, its job lines are what sal missing groups")
    command = [sys.executable, "-m", "snakemake", "-n", *snakemake_args]
    result = subprocess.run(command, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise SalError(f"snakemake -n failed (exit {result.returncode}):\n{tail}")
    return output
