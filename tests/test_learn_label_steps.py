"""`sal label-steps` on the tiny model: stepwise rows train-prm can read, the final step judged by the
completion's own answer, a prefix that already states the gold answer labelled good, shared prefixes
rolled out once, all rollouts in one generate call, and the same labels from the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sal_core.backends import load_backend
from sal_core.cli import main
from sal_core.learn.label_steps import LabelSettings, label_steps, rollout_answer
from sal_core.learn.stepwise import load_stepwise
from sal_core.settings.jobs import ModelSettings

RIGHT = "## Step 1: Add\n2 + 3 = 5.\n\n## Step 2: Answer\nThe answer is $\\boxed{5}$.\n\n## Step 3: Check\nIt is right."
WRONG = "## Step 1: Add\n2 + 3 = 5.\n\n## Step 2: Guess\nMaybe 6.\n\nTherefore, the final answer is: $\\boxed{6}$."


@pytest.fixture(scope="module")
def completions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "merged.parquet"
    pd.DataFrame(
        {
            "problem_id": ["a", "b"],
            "problem": ["What is $2 + 3$?", "What is $10 - 4$?"],
            "answer": ["5", "6"],
            "completions": [[RIGHT, WRONG], ["First, 10 - 4 = 6.\n\nSo $\\boxed{6}$."]],
        }
    ).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def model(tiny_model_path: Path) -> ModelSettings:
    return ModelSettings(name="tiny", path=str(tiny_model_path), device="cpu", max_model_len=1024)


def test_labels_and_one_generate_call(completions, model, tmp_path) -> None:
    backend = load_backend(model)
    calls = []
    generate = backend.generate
    backend.generate = lambda requests: calls.append(len(requests)) or generate(requests)
    settings = LabelSettings(k=2, max_tokens=6, seed=3)
    out = tmp_path / "steps.jsonl"
    frame = label_steps(completions, model, settings, out, workers=1, backend=backend)
    # distinct prefixes: problem a: "Step 1" (shared by both completions), RIGHT[:2], WRONG[:2]; problem b: 1
    assert calls == [4 * 2]
    rows = frame.set_index(["problem_id", "completion_index"])
    # RIGHT: the prefix ending at step 2 already states the gold answer; its last step: its own answer 5
    assert rows.loc[("a", 0), "labels"][1:] == [True, True]
    assert rows.loc[("a", 0), "mc_values"][1] == 1.0
    # WRONG's own final answer is 6: the last step is bad
    assert not rows.loc[("a", 1), "labels"][-1]
    assert rows.loc[("b", 0), "labels"][-1]
    assert rows.loc[("a", 0), "completions"] == RIGHT.split("\n\n")
    stepwise = load_stepwise(str(out))
    assert len(stepwise) == 3 and stepwise["labels"].map(len).tolist() == [3, 3, 2]
    again = label_steps(completions, model, settings, tmp_path / "again.jsonl", workers=1, backend=backend)
    assert again["mc_values"].tolist() == frame["mc_values"].tolist()


@pytest.mark.parametrize("continuation", ["reencode", "exact"])
def test_limits_and_cli(completions, model, tmp_path, continuation) -> None:
    """The CLI loads the policy itself (no backend passed in), in both continuation modes: exact
    continuation tokenizes the prefixes with the tokenizer it loaded."""
    out = tmp_path / "steps.parquet"
    settings = json.dumps({"name": "tiny", "path": model.path, "device": "cpu", "max_model_len": 1024})
    code = main(
        [
            "label-steps",
            "--completions",
            str(completions),
            "--model",
            settings,
            "--out",
            str(out),
            "--k",
            "1",
            "--max-tokens",
            "4",
            "--max-completions",
            "1",
            "--max-steps",
            "1",
            "--stop",
            "\\n\\nProblem:",
            "--workers",
            "1",
            "--continuation",
            continuation,
        ]
    )
    assert code == 0
    frame = pd.read_parquet(out)
    assert frame["completion_index"].tolist() == [0, 0]
    assert frame["labels"].map(len).tolist() == [1, 1]


def test_missing_answer_column_is_named(tmp_path, model) -> None:
    bad = tmp_path / "c.parquet"
    pd.DataFrame({"problem": ["p"], "completions": [["x"]]}).to_parquet(bad)
    code = main(
        [
            "label-steps",
            "--completions",
            str(bad),
            "--model",
            json.dumps({"name": "m", "path": model.path}),
            "--out",
            str(tmp_path / "o.parquet"),
        ]
    )
    assert code == 2


def test_a_rollout_answer_ends_at_a_stop_string() -> None:
    runaway = " $\\boxed{5}$.\n\nProblem: What is $1 + 1$?\nSolution: $\\boxed{2}$"
    assert rollout_answer("2 + 3 = 5.\n\n", runaway) == "2"
    assert rollout_answer("2 + 3 = 5.\n\n", runaway, ["\n\nProblem:"]) == "5"
    assert rollout_answer("So $\\boxed{5}$.\n\n", "Done.", ["\n\nProblem:"]) == "5"


def test_a_rollout_continues_from_the_end_of_its_step_not_after_the_separator(completions, model, tmp_path) -> None:
    """Re-tokenized, a trailing blank line is a token the policy would not write there itself."""
    backend = load_backend(model)
    prompts = []
    generate = backend.generate
    backend.generate = lambda requests: prompts.extend(r.prompt for r in requests) or generate(requests)
    label_steps(completions, model, LabelSettings(k=1, max_tokens=2), tmp_path / "s.jsonl", workers=1, backend=backend)
    assert prompts and not any(p.endswith("\n") for p in prompts)
    assert any(p.endswith("## Step 1: Add\n2 + 3 = 5.") for p in prompts)
    assert any(p.endswith("2 + 3 = 5.\n\n## Step 2: Guess\nMaybe 6.") for p in prompts)
