"""Stepwise-supervision data, the format TRL's PRMTrainer reads: one row per solution with `prompt`
(the problem), `completions` (its steps, a list of strings) and `labels` (one bool per step, True
= the step is correct).

`tokenize_row` turns a row into input ids and token labels exactly as TRL 1.13's
`PRMTrainer.tokenize_row` does (tests/test_learn_stepwise.py checks it against TRL's own output):
[BOS] + prompt + (step + separator) per step; each step's label sits on its separator's last token,
-100 everywhere else; the completion is cut to `max_completion_length`, then the whole row to
`max_length`; with `train_on_last_step_only`, training rows keep only the last step's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sal_core.errors import DatasetError
from sal_core.prm.trl_token import step_layout
from sal_core.settings.stepwise_source import fingerprint, is_local  # noqa: F401 (fingerprint: re-exported)

COLUMNS = ("prompt", "completions", "labels")
IGNORE = -100


def _as_list(value: Any) -> list | None:
    """Lists come back from parquet as numpy arrays; anything that is not a sequence gives None."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        listed = value.tolist()
        return listed if isinstance(listed, list) else None
    return None


def check_rows(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The three stepwise columns, checked row by row: a bad row is named before any training starts."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{where}: missing column(s) {', '.join(missing)} (columns: {', '.join(map(str, frame))})")
    if frame.empty:
        raise DatasetError(f"{where}: has no rows")
    prompts, steps_out, labels_out = [], [], []
    for row, (prompt, steps, labels) in enumerate(
        zip(frame["prompt"], frame["completions"], frame["labels"], strict=True)
    ):
        steps, labels = _as_list(steps), _as_list(labels)
        if not isinstance(prompt, str):
            raise DatasetError(f"{where}: row {row} prompt is not a string")
        if steps is None or labels is None or not steps:
            raise DatasetError(f"{where}: row {row} needs 'completions' and 'labels' as non-empty lists")
        if len(steps) != len(labels):
            raise DatasetError(f"{where}: row {row} has {len(steps)} steps but {len(labels)} labels")
        if not all(isinstance(s, str) for s in steps):
            raise DatasetError(f"{where}: row {row} has a step that is not a string")
        if not all(isinstance(x, (bool, int)) and x in (0, 1) for x in labels):
            raise DatasetError(f"{where}: row {row} has a label that is not a bool: {labels}")
        prompts.append(prompt)
        steps_out.append(steps)
        labels_out.append([bool(x) for x in labels])
    return pd.DataFrame({"prompt": prompts, "completions": steps_out, "labels": labels_out})


def _read_local(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"dataset: local file {path} does not exist")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
    except ValueError as err:
        raise DatasetError(f"dataset: cannot read {path}: {err}") from err


def load_stepwise(
    dataset: str | Sequence[str], split: str = "train", subset: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    """A checked stepwise table from local .jsonl/.json/.parquet files (several are read as one, in
    order: the shards `sal label-steps` writes) or a Hub dataset (e.g. trl-lib/prm800k)."""
    if is_local(dataset):
        files = [dataset] if isinstance(dataset, str) else list(dataset)
        frame = pd.concat([_read_local(Path(f)) for f in files], ignore_index=True)
    else:
        import datasets

        try:
            frame = datasets.load_dataset(dataset, subset, split=split).to_pandas()
        except Exception as err:  # network, missing split, bad name: datasets raises many types
            raise DatasetError(
                f"dataset: cannot load Hub dataset {dataset!r} (subset {subset!r}, split {split!r}): "
                f"{err.__class__.__name__}: {err}"
            ) from err
    if limit is not None:
        frame = frame.iloc[:limit]
    return check_rows(frame, f"dataset {dataset}")


def tokenize_row(
    prompt_ids: list[int],
    step_ids: Sequence[list[int]],
    labels: Sequence[bool],
    bos_id: int | None,
    separator_ids: list[int],
    max_length: int | None,
    max_completion_length: int | None = None,
    train_on_last_step_only: bool = False,
    is_eval: bool = False,
) -> dict[str, list[int]]:
    """Input ids and token labels of one row, from its already tokenized prompt and steps (see module doc)."""
    if train_on_last_step_only and not is_eval:
        step_labels = [IGNORE] * (len(labels) - 1) + [int(labels[-1])]
    else:
        step_labels = [int(x) for x in labels]
    prompt = step_layout(bos_id, prompt_ids, [], separator_ids).input_ids
    layout = step_layout(None, [], step_ids, separator_ids)
    completion_labels = [IGNORE] * len(layout.input_ids)
    for position, label in zip(layout.positions, step_labels, strict=True):
        completion_labels[position] = label
    completion = layout.input_ids
    if max_completion_length is not None:
        completion, completion_labels = completion[:max_completion_length], completion_labels[:max_completion_length]
    input_ids = prompt + completion
    token_labels = [IGNORE] * len(prompt) + completion_labels
    if max_length is not None:
        input_ids, token_labels = input_ids[:max_length], token_labels[:max_length]
    return {"input_ids": input_ids, "labels": token_labels}


def tokenize_batch(
    batch: dict[str, list], tokenizer: Any, step_separator: str, is_eval: bool = False, **limits: Any
) -> dict[str, list[list[int]]]:
    """`tokenize_row` over a batch of rows (a `datasets.map(batched=True)` function): all prompts and
    all steps go through the fast tokenizer in two calls instead of one call per step."""
    separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)
    prompt_ids = tokenizer(list(batch["prompt"]), add_special_tokens=False)["input_ids"]
    flat = [step for steps in batch["completions"] for step in steps]
    flat_ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    start = 0
    for prompt, steps, labels in zip(prompt_ids, batch["completions"], batch["labels"], strict=True):
        row = tokenize_row(
            prompt,
            flat_ids[start : start + len(steps)],
            labels,
            tokenizer.bos_token_id,
            separator_ids,
            is_eval=is_eval,
            **limits,
        )
        start += len(steps)
        out["input_ids"].append(row["input_ids"])
        out["labels"].append(row["labels"])
    return out
