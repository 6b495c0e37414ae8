"""`sal evaluate --protocol sal`: search-and-learn's own scoring, to compare with its published numbers.

Reimplements `score()` of search-and-learn's `src/sal/utils/score.py` with the voting of its
`src/sal/utils/math.py` and the correctness check of the Qwen2.5-Math harness its README uses
(answer rules: sal_core.evaluation.sal_answers, equivalence: sal_core.evaluation.sal_equal). Per problem and n:

- n = 1, 2, 4, … up to the run's N (powers of two only, N itself only when it is one);
- the first n completions, no random subsamples (a DVTS run's subtrees stay whole);
- every completion votes with `extract_answer(text)`: its boxed answer or, without one, the
  fallback (text after "the answer is", else the last number in the text, else "");
- votes are grouped by `canonical_form`, a group answers with its first member;
- majority: the largest group; weighted: the largest sum of scores (search-and-learn always uses
  the last step's score: keep `--aggregation last`); naive: the highest-scored completion;
  every tie goes to the first-occurring group or completion;
- correct: `answers_equal(extract_answer("\\boxed{" + winner + "}"), extract_answer("\\boxed{" + gold + "}"))`;
- pass@k: the unbiased estimator over all N completions, a completion counting as correct when its
  canonical form equals the gold's (search-and-learn's `compute_pass_at_k`).

Particle filtering, which search-and-learn does not run, is scored at its run's n only (one run per n,
as the default protocol does: the first k particles of a run are no run at budget k), over all its final
particles, duplicates included, with the same votes, and a `selected` vote: the particle the search
itself chose, checked by the same rules.

Every sympy step runs under `--timeout` (a timed-out grouping falls back to the stripped string, a
timed-out check is "wrong", both counted in `timeouts`); a problem whose worker hangs in C code
past a generous limit is re-run without sympy (string and number rules only), counted as a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sal_core.constants import PARTICLE_FILTERING, VOTES
from sal_core.errors import ShardError
from sal_core.evaluation import votes
from sal_core.evaluation.compute import Spend, spend_columns
from sal_core.evaluation.evaluate import EvalOptions, RunCredit, check_columns
from sal_core.evaluation.guarded import run_guarded
from sal_core.evaluation.levels import normalise_level
from sal_core.evaluation.sal_answers import extract_answer
from sal_core.evaluation.sal_equal import answers_equal, canonical_form
from sal_core.prm.step_aggregation import aggregate_steps


def sal_sizes(num_samples: int) -> list[int]:
    """search-and-learn's subset sizes: every power of two up to N (so N = 12 gives 1, 2, 4, 8)."""
    sizes, n = [], 1
    while n <= num_samples:
        sizes.append(n)
        n *= 2
    return sizes


@dataclass
class Task:
    """One problem's inputs to a worker."""

    completions: list[str]
    scores: list[float]
    gold: str
    sizes: list[int]
    timeout: float
    #: particle filtering: the index of the particle the search selected (its own vote), else None
    selected: int | None = None


@dataclass
class Solved:
    """One problem's outcome: correct[vote][size index], completions matching gold, timed-out checks."""

    correct: dict[str, list[bool]]
    num_correct: int
    timeouts: int


def winners(keys: list[str], scores: list[float], n: int) -> dict[str, int]:
    """Index of the completion whose answer each vote returns, among the first n (first wins ties)."""
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, (key, score) in enumerate(zip(keys[:n], scores[:n], strict=True)):
        counts[key] = counts.get(key, 0) + 1
        sums[key] = sums.get(key, 0.0) + score
        first.setdefault(key, i)
    top = max(counts.values())
    majority = next(k for k, c in counts.items() if c == top)
    weighted = max(sums, key=sums.__getitem__)  # max() keeps the first of equal maxima
    naive = max(range(len(keys[:n])), key=scores.__getitem__)
    return {"majority": first[majority], "naive": naive, "weighted": first[weighted]}


def solve(task: Task, symbolic: bool = True) -> Solved:
    """Votes and their correctness at every size for one problem (runs in a worker process)."""
    answers = [extract_answer(text) for text in task.completions]
    timeouts = 0
    canon: dict[str, str] = {}
    for answer in dict.fromkeys(answers):
        canon[answer], late = canonical_form(answer, task.timeout, symbolic)
        timeouts += late
    keys = [canon[a] for a in answers]
    gold = extract_answer("\\boxed{" + task.gold + "}")
    verdicts: dict[str, bool] = {}

    def is_correct(answer: str) -> bool:
        nonlocal timeouts
        if answer not in verdicts:
            pred = extract_answer("\\boxed{" + answer + "}")
            verdicts[answer], late = answers_equal(pred, gold, task.timeout, symbolic)
            timeouts += late
        return verdicts[answer]

    names = _votes(task)
    correct: dict[str, list[bool]] = {vote: [] for vote in names}
    for n in task.sizes:
        picked = winners(keys, task.scores, n) if answers else {}
        if task.selected is not None and answers:
            picked[votes.SELECTED] = task.selected
        for vote in names:
            correct[vote].append(vote in picked and is_correct(answers[picked[vote]]))
    gold_key, late = canonical_form(task.gold, task.timeout, symbolic)
    timeouts += late
    return Solved(correct, sum(k == gold_key for k in keys), timeouts)


def _votes(task: Task) -> tuple[str, ...]:
    """The votes scored for a problem: VOTES, and the search's own choice where it made one."""
    return VOTES if task.selected is None else (*VOTES, votes.SELECTED)


def hard_limit(task: Task) -> float:
    """Seconds a worker may spend on one problem before it counts as hung: far above its checks' own limits."""
    return 60 + task.timeout * (len(task.completions) + 3 * len(task.sizes))


def _solve_job(job: tuple[Task, bool]) -> Solved:
    return solve(*job)


def solve_all(tasks: list[Task], workers: int, progress: bool = True) -> list[Solved]:
    """Solve every problem in `workers` processes; a problem past its hard limit is re-run without
    sympy and counted as one timeout (`run_guarded`)."""
    limits = [hard_limit(task) for task in tasks]
    solved, plain = run_guarded(_solve_job, tasks, limits, workers, "grading (sal)", progress)
    for i in plain:
        solved[i].timeouts += 1
    return solved


def _tasks(frame: pd.DataFrame, sizes: list[int], options: EvalOptions) -> list[Task]:
    tasks = []
    selected = frame["selected"].tolist() if "selected" in frame.columns else [None] * len(frame)
    for row, chosen in zip(frame.itertuples(index=False), selected, strict=True):
        completions = [str(c) for c in row.completions]
        step_scores = row.scores if row.scores is not None else []
        if len(step_scores) != len(completions):
            raise ShardError(
                f"problem {row.problem_id!r} has {len(completions)} completions but {len(step_scores)} score lists"
            )
        scores = [aggregate_steps(s if s is not None else [], options.aggregation) for s in step_scores]
        pick = None if chosen is None or pd.isna(chosen) or int(chosen) >= len(completions) else int(chosen)
        tasks.append(Task(completions, scores, str(row.answer), sizes, options.timeout, pick))
    return tasks


def _first_n_spend(frame: pd.DataFrame, keys: dict[str, str], sizes: list[int]) -> list[dict[str, np.ndarray]]:
    """Per size: the returned tokens of each problem's first n completions (`mean_tokens`) and the
    run's spend charged for them (SPEND_COLUMNS; NaN when the file has no counts)."""
    spend = Spend.read(frame)
    method, width = keys.get("method", "best_of_n"), int(keys.get("beam_width") or 1)
    out = []
    for n in sizes:
        returned = np.array([_first(c, n) for c in spend.completion])
        out.append({"mean_tokens": returned, **spend_columns(*spend.at(method, n, width, first_n=True))})
    return out


def _first(values: np.ndarray | None, n: int) -> float:
    return float(values[:n].sum()) if values is not None and len(values) else np.nan


def sal_metrics(frame: pd.DataFrame, keys: dict[str, str], options: EvalOptions, path: str = "merged") -> pd.DataFrame:
    """Metric rows (the default protocol's schema) of one merged run under search-and-learn's protocol."""
    return sal_credit(frame, keys, options, path).metrics(keys, options, np.random.default_rng(options.seed))


def sal_credit(frame: pd.DataFrame, keys: dict[str, str], options: EvalOptions, path: str = "merged") -> RunCredit:
    """Every problem's credit at every size and vote under search-and-learn's protocol."""
    check_columns(frame, path)
    counts = np.array([len(c) for c in frame["completions"]])
    if counts.max(initial=0) == 0:
        raise ShardError(f"{path}: no completions to evaluate")
    run_n = str(keys.get("n", ""))
    sizes = sal_sizes(int(run_n) if run_n.isdigit() else int(counts.max()))
    if keys.get("method") == PARTICLE_FILTERING and run_n.isdigit():
        sizes = [int(run_n)]  # a run per n, whose particles are no budget of a smaller n: all of them
    tasks = _tasks(frame, sizes, options)
    solved = solve_all(tasks, options.workers, options.progress)
    labels, per_problem = [], []
    spent = _first_n_spend(frame, keys, sizes)
    token_rows = []
    num_correct = np.array([s.num_correct for s in solved])
    names = (*VOTES, votes.SELECTED) if any(t.selected is not None for t in tasks) else VOTES
    for j, n in enumerate(sizes):
        for vote in names:
            labels.append((n, vote))
            per_problem.append(np.array([float(vote in s.correct and s.correct[vote][j]) for s in solved]))
            token_rows.append(spent[j])
        labels.append((n, "pass@k"))
        per_problem.append(votes.pass_at_k(num_correct, counts, n))
        token_rows.append(spent[j])
    levels = [normalise_level(v) for v in frame["level"]] if "level" in frame.columns else [None] * len(frame)
    timeouts = np.array([s.timeouts for s in solved])
    columns = {name: np.vstack([row[name] for row in token_rows]) for name in token_rows[0]}
    mean_score = np.array([np.mean(t.scores) if t.scores else np.nan for t in tasks])
    return RunCredit(labels, np.vstack(per_problem), columns, levels, timeouts, counts, num_correct, mean_score)
