"""The embedded default judge: the real SmolLM2-135M-Instruct scoring steps in RLHFlow format."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sal_core.prm import load_prm, split_steps
from sal_core.settings.jobs import PRMSettings

PROBLEMS = ["What is $3 \\times 4 + 2$?", "Solve for $x$: $2x + 6 = 10$."]
COMPLETIONS = [
    [
        "## Step 1: Multiply\n$3 \\times 4 = 12$.\n\n## Step 2: Add\n$12 + 2 = 14$.\n\n"
        "Therefore, the final answer is: $\\boxed{14}$. I hope it is correct.",
        "## Step 1: Add first\n$4 + 2 = 6$.\n\n## Step 2: Multiply\n$3 \\times 6 = 18$.\n\n"
        "Therefore, the final answer is: $\\boxed{18}$. I hope it is correct.",
    ]
    * 4,
    [
        "## Step 1: Subtract 6\n$2x = 4$.\n\n## Step 2: Divide by 2\n$x = 2$.\n\n"
        "Therefore, the final answer is: $\\boxed{2}$. I hope it is correct.",
        "$x = 8$.\n\nTherefore, the final answer is: $\\boxed{8}$.",
    ]
    * 4,
]


@pytest.mark.slow
def test_smollm2_rlhflow_judge(smollm2_path: Path) -> None:
    prm = load_prm(PRMSettings(name="smollm2-judge", type="rlhflow", path=str(smollm2_path), device="cpu"))
    start = time.perf_counter()
    scores = prm.score(PROBLEMS, COMPLETIONS)
    elapsed = time.perf_counter() - start
    n = sum(len(c) for c in COMPLETIONS)
    print(f"\nSmolLM2-135M RLHFlow judge: {elapsed / n * 1000:.0f} ms per completion ({n} completions, CPU)")
    for per_problem, comps in zip(scores, COMPLETIONS, strict=True):
        for got, completion in zip(per_problem, comps, strict=True):
            assert len(got) == len(split_steps(completion))
            assert all(0.0 <= x <= 1.0 for x in got)
    # identical completions get identical scores, whatever batch they landed in
    assert scores[0][0] == pytest.approx(scores[0][2], abs=1e-4)
    # a real (if untrained) judge: not a constant
    flat = [x for p in scores for s in p for x in s]
    assert max(flat) - min(flat) > 1e-3
