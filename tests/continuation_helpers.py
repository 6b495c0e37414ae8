"""What the exact-continuation tests share: the embedded default's greedy job on the real SmolLM2, the
greedy whole solution of a prompt (with its ids), and a check that tells a real difference from a
near-tie between two decodings (the whole solution's prefill vs a step-wise search's steps)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from sal_core.backends.base import GenerationBackend, GenerationRequest
from sal_core.search import build_prompts
from sal_core.settings.grid import build_grid
from sal_core.settings.jobs import SEARCH_DEFAULTS, GenerateJob

REPO = Path(__file__).resolve().parent.parent
#: below this logit gap between the two tokens where the texts part, the difference is rounding
NEAR_TIE = 1e-2


def default_problems(count: int) -> list[str]:
    """The embedded default's first `count` problems (config/config.yaml: easy_math, limit 4)."""
    lines = (REPO / "sal_core" / "builtin" / "easy_math.jsonl").read_text().splitlines()
    return [json.loads(line)["problem"] for line in lines[:count]]


def default_job(model_path: Path, method: str, **search) -> GenerateJob:
    """The embedded default's beam-search job (config/config.yaml: prompt, steps, iterations,
    continuation) run as `method` on `model_path`, greedy, n = 1, one beam, with `search` overrides."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    runs = [r for r in build_grid(config).runs if r.method == "beam_search"]
    job = runs[0].job
    model = replace(job.model, path=str(model_path), device="cpu")
    prm = replace(job.prm, path=str(model_path), device="cpu")
    settings = {"n": 1, "beam_width": 1, "temperatures": [0.0], "temperature_ratios": None, **search}
    if method == "particle_filtering":
        settings["beam_width"] = SEARCH_DEFAULTS["beam_width"]
    search_settings = replace(job.search, method=method, **settings)
    search_settings.validate("search")
    return GenerateJob(model, search_settings, prm)


def greedy_whole(backend: GenerationBackend, job: GenerateJob, problems: list[str], max_tokens: int):
    """Greedy whole-solution generation (no stop string) of every problem: the outputs, ids included."""
    prompts = build_prompts(problems, job, backend)
    return prompts, backend.generate([GenerationRequest(p, 0.0, 1.0, max_tokens) for p in prompts])


def check_prefix(backend: GenerationBackend, prompt: str, whole_ids: tuple[int, ...], stepwise: str, what: str) -> None:
    """`stepwise` must begin the greedy whole solution (`whole_ids`). Where they part, a logit gap
    under NEAR_TIE between the whole solution's token and the runner-up is a near-tie in the last
    bits (a prefill and step-by-step decoding round differently): the test says so (xfail)."""
    whole = backend.tokenizer.decode(list(whole_ids), skip_special_tokens=True)
    if whole.startswith(stepwise):
        return
    common = next((i for i, (a, b) in enumerate(zip(whole, stepwise, strict=False)) if a != b), len(whole))
    position = next(j for j in range(len(whole_ids) + 1) if len(backend.tokenizer.decode(list(whole_ids[:j]))) > common)
    context = backend.tokenizer(prompt, add_special_tokens=False)["input_ids"] + list(whole_ids[: position - 1])
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([context])).logits[0, -1].float()
    top = logits.topk(2)
    gap = float(top.values[0] - top.values[1])
    parts = f"{whole[common:][:40]!r} vs {stepwise[common:][:40]!r}"
    detail = f"{what}: parts from the greedy whole solution at char {common}: {parts}"
    if gap < NEAR_TIE:
        pytest.xfail(f"{detail}; a near-tie (logit gap {gap:.2e} < {NEAR_TIE}), not a continuation error")
    raise AssertionError(f"{detail} (logit gap {gap:.3f}: not a near-tie)")
