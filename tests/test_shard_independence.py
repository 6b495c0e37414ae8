"""A problem's samples depend on its dataset row and the run seed, never on how the dataset is sharded."""

from __future__ import annotations

from pathlib import Path

from sal_core.backends import load_backend
from sal_core.search import run_search
from sal_core.settings.jobs import GenerateJob, ModelSettings, SearchSettings


def test_same_problem_same_samples_in_any_shard(tiny_model_path: Path) -> None:
    model = ModelSettings(name="tiny", path=str(tiny_model_path), max_model_len=512)
    job = GenerateJob(model=model, search=SearchSettings(method="best_of_n", n=3, max_tokens=8, temperatures=[1.0]))
    backend = load_backend(model)
    problems = ["What is 1 + 1?", "What is 2 + 2?", "What is 3 + 3?"]
    whole = run_search(problems, job, backend, None, first_index=0)
    # the same dataset rows 1-2 as a shard of their own
    shard = run_search(problems[1:], job, backend, None, first_index=1)
    assert [r.completions for r in shard] == [r.completions for r in whole[1:]]
    # a different row (or seed) gives different samples, so the check above means something
    moved = run_search(problems[1:2], job, backend, None, first_index=0)
    assert moved[0].completions != whole[1].completions
