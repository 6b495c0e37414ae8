"""Step labels without people, the Math-Shepherd way (Wang et al., 2024, arXiv 2312.08935).

For every completion of every problem, step d's label says whether the solution can still be saved
after it: k rollouts continue from the prefix ending at step d (the policy's prompt and the steps
so far, ending with step d's text: the rollout writes the separator itself), and the step is good
when at least one of them reaches the gold answer ("hard estimation"; `mc_values` keeps the
fraction that did, the "soft" one). The last step of a
finished completion needs no rollout: its label is whether the completion's own answer is right.
Answers are the last \\boxed{} of prefix + rollout, graded with the project's grader.

Identical prefixes of one problem (common: samples often share their first step) are rolled out
once. All rollouts of all problems go to the backend in ONE generate call, and all answers to the
grader in one call; seeds are derived from the run seed and the prefix's first position, so a run
is reproducible. The output rows are the stepwise format `sal train-prm` reads: prompt (the
problem), completions (the steps), labels, plus problem_id, completion_index and mc_values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sal_core.backends.base import GenerationBackend, GenerationRequest
from sal_core.errors import DatasetError
from sal_core.evaluation.grading import grade_all, last_boxed
from sal_core.job_devices import job_gpus_held
from sal_core.prm.base import STEP_SEPARATOR, split_steps
from sal_core.search.prompts import build_prompt
from sal_core.search.steps import token_budget
from sal_core.search.temperatures import derive_seed
from sal_core.settings.endpoint import Servers
from sal_core.settings.jobs import ModelSettings
from sal_core.settings.learn import LabelSettings
from sal_core.tables import read_table, write_table_atomic, write_text_atomic

log = logging.getLogger(__name__)

REQUIRED = ("problem", "answer", "completions")


@dataclass
class Prefix:
    """A distinct partial solution of one problem, rolled out k times."""

    problem: int
    text: str
    seed_position: tuple[int, int, int]
    answers: list[str | None]
    rolled_out: bool = True
    #: `continuation: exact`: the prefix's ids after the prompt (exact_prefixes)
    ids: tuple[int, ...] | None = None


def read_completions(path: str | Path) -> pd.DataFrame:
    """A completions / merged table with problem, answer and completions (a list per problem)."""
    frame = read_table(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} (a completions or merged table has them)")
    if "problem_id" not in frame.columns:
        frame = frame.assign(problem_id=[str(i) for i in range(len(frame))])
    return frame.reset_index(drop=True)


def plan_rows(
    frame: pd.DataFrame, settings: LabelSettings
) -> tuple[list[dict[str, Any]], dict[tuple[int, str], Prefix]]:
    """One row per labelled completion (its steps), and the distinct prefixes that need rollouts."""
    rows: list[dict[str, Any]] = []
    prefixes: dict[tuple[int, str], Prefix] = {}
    for i, completions in enumerate(frame["completions"]):
        for j, completion in enumerate(list(completions)[: settings.max_completions]):
            completion = before_stops(completion, settings.stop)
            steps = split_steps(completion)
            if not steps:
                continue
            labelled = steps[: settings.max_steps]
            keys = []
            for d in range(1, len(labelled) + 1):
                if d == len(steps):  # the whole completion: its own answer decides
                    keys.append(None)
                    continue
                # the prefix ends with the step, not with the separator after it: re-tokenized, a
                # trailing blank line becomes one "\n\n" token where the model itself writes "\n" "\n",
                # and after that token SmolLM2 goes astray (0 of 8 rollouts reach the answer that 7 of
                # 8 reach from the step's end); so the rollout writes the separator itself
                text = STEP_SEPARATOR.join(steps[:d])
                prefixes.setdefault((i, text), Prefix(i, text, (i, j, d), []))
                keys.append((i, text))
            own = rollout_answer("", completion, settings.stop)
            rows.append({"problem": i, "completion_index": j, "steps": labelled, "keys": keys, "own": own})
    return rows, prefixes


def before_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to its first stop string: a few-shot policy that runs on into a new problem of its
    own writes steps and boxes an answer there that belong to no solution of this problem."""
    for stop in stops:
        text = text.split(stop, 1)[0]
    return text


def rollout_answer(prefix: str, continuation: str, stops: Sequence[str] = ()) -> str | None:
    """The final answer of prefix + rollout: its last \\boxed{}, ignoring anything from a stop string on."""
    return last_boxed(prefix + before_stops(continuation, stops))


def roll_out(backend: GenerationBackend, prompts: list[str], prefixes: list[Prefix], settings: LabelSettings) -> None:
    """k continuations of every prefix in one generate call; stores each rollout's final answer.
    Each prefix's prompt is tokenized once (reencode) or carried as ids (exact), and sent as ids."""
    requests, owners = [], []
    texts = [prompts[prefix.problem] + prefix.text for prefix in prefixes]
    if settings.continuation == "exact":
        prompt_ids = backend.encode_prompts(prompts)
        contexts = [[*prompt_ids[prefix.problem], *(prefix.ids or ())] for prefix in prefixes]
    else:
        contexts = backend.encode_prompts(texts) if texts else []
    for prefix, prompt, ids in zip(prefixes, texts, contexts, strict=True):
        budget = token_budget(backend.max_model_len, len(ids), settings.max_tokens)
        if budget is None:
            prefix.rolled_out = False  # the prefix fills the context window: its step stays unlabelled
            continue
        for r in range(settings.k):
            seed = derive_seed(settings.seed, *prefix.seed_position, r)
            request = GenerationRequest(
                prompt, settings.temperature, settings.top_p, budget, tuple(settings.stop), seed, tuple(ids)
            )
            requests.append(request)
            owners.append(prefix)
    outputs = backend.generate(requests) if requests else []
    for prefix, output in zip(owners, outputs, strict=True):
        prefix.answers.append(rollout_answer(prefix.text, output.text, settings.stop))


def step_end(completion: str, d: int) -> int:
    """Where step d of `completion` ends, the blank line after it included (split_steps' steps)."""
    position, seen = 0, 0
    for chunk in completion.split(STEP_SEPARATOR):
        position += len(chunk)
        if chunk.strip():
            seen += 1
            if seen == d:
                return min(position + len(STEP_SEPARATOR), len(completion))
        position += len(STEP_SEPARATOR)
    return len(completion)


def exact_prefixes(tokenizer: Any, frame: pd.DataFrame, prefixes: Sequence[Prefix], stops: Sequence[str]) -> None:
    """`continuation: exact`: each prefix becomes its completion's ids up to the token that ends step
    d's blank line, its text their decode (it may run past the blank line, as a step in an exact
    search does). The completions file keeps texts, not the generated ids: the completion's own
    tokenization stands in for them, which is exact wherever the model wrote the text's tokenization
    (SmolLM2 writes a blank line before a word as "\n" "\n", as its tokenizer encodes it inside a text)."""
    encoded: dict[tuple[int, int], tuple[str, Any]] = {}
    for prefix in prefixes:
        i, j, d = prefix.seed_position
        if (i, j) not in encoded:
            completion = before_stops(str(list(frame.at[i, "completions"])[j]), stops)
            encoded[(i, j)] = (completion, tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True))
        completion, tokens = encoded[(i, j)]
        end = step_end(completion, d)
        ids = tokens["input_ids"]
        cut = next((t + 1 for t, (_, stop) in enumerate(tokens["offset_mapping"]) if stop >= end), len(ids))
        prefix.ids = tuple(ids[:cut])
        prefix.text = tokenizer.decode(list(prefix.ids), skip_special_tokens=True)


def grade(golds: list[str], answers: list[list[str | None]], workers: int) -> list[dict[str, bool]]:
    """For each problem, {answer: is it the gold answer} over the given answers (None: no answer)."""
    distinct = [sorted({a for a in per_problem if a is not None}) for per_problem in answers]
    grades = grade_all(golds, distinct, workers=workers)
    return [{a: cls == 0 for a, cls in zip(d, g.classes, strict=True)} for d, g in zip(distinct, grades, strict=True)]


def assemble(
    frame: pd.DataFrame, rows: list[dict[str, Any]], prefixes: dict[tuple[int, str], Prefix], correct: list[dict]
) -> list[dict[str, Any]]:
    """The stepwise rows: per step, the fraction of rollouts (or the own answer) that is right."""
    out = []
    for row in rows:
        i, values = row["problem"], []
        for key in row["keys"]:
            if key is None:
                values.append(float(correct[i].get(row["own"], False)))
                continue
            prefix = prefixes[key]
            if not prefix.rolled_out:
                break  # this step and the rest stay unlabelled
            values.append(sum(correct[i].get(a, False) for a in prefix.answers if a) / len(prefix.answers))
        if not values:
            continue
        out.append(
            {
                "problem_id": str(frame.at[i, "problem_id"]),
                "completion_index": row["completion_index"],
                "prompt": str(frame.at[i, "problem"]),
                "completions": row["steps"][: len(values)],
                "labels": [v > 0 for v in values],
                "mc_values": values,
            }
        )
    return out


def label_steps(
    completions_path: str | Path,
    model: ModelSettings,
    settings: LabelSettings,
    out: str | Path,
    workers: int = 2,
    backend: GenerationBackend | None = None,
    servers: Servers | None = None,
) -> pd.DataFrame:
    """Label every step of the completions in `completions_path` and write the stepwise rows to `out`."""
    from sal_core.backends import load_backend

    settings.validate("labeling")
    frame = read_completions(completions_path)
    rows, prefixes = plan_rows(frame, settings)
    if not rows:
        raise DatasetError(f"{completions_path}: no completion has a step to label")
    ordered = list(prefixes.values())
    log.info("%d completions, %d distinct prefixes, %d rollouts", len(rows), len(ordered), len(ordered) * settings.k)
    # its own GPU (locally: locked for it) before anything touches CUDA, for the rollouts
    with job_gpus_held(model if backend is None else None, None):
        backend = backend or load_backend(model, servers)
        if settings.continuation == "exact":  # the policy's own tokenizer: loaded with it, or the one passed
            exact_prefixes(backend.tokenizer, frame, ordered, settings.stop)
        template = model.chat_template
        prompts = [build_prompt(backend.tokenizer, p, model.system_prompt, template) for p in frame["problem"]]
        roll_out(backend, prompts, ordered, settings)
    answers: list[list[str | None]] = [[] for _ in range(len(frame))]
    for prefix in ordered:
        answers[prefix.problem] += prefix.answers
    for row in rows:
        answers[row["problem"]].append(row["own"])
    correct = grade([str(a) for a in frame["answer"]], answers, workers)
    result = pd.DataFrame(assemble(frame, rows, prefixes, correct))
    write_stepwise(result, out)
    return result


def write_stepwise(frame: pd.DataFrame, out: str | Path) -> Path:
    """Parquet, or JSON lines when `out` ends in .jsonl (atomically either way)."""
    out = Path(out)
    if out.suffix == ".jsonl":
        return write_text_atomic(frame.to_json(orient="records", lines=True, force_ascii=False), out)
    return write_table_atomic(frame, out)
