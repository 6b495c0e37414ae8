"""The verifier where the other PRMs go (issue 27 item 2): guiding beam search, DVTS and particle
filtering in process, scoring a shard with `sal score`'s code, and behind `sal serve-prm` with the
same scores as in process. The policy is scripted so that about half its steps claim a false sum:
only a verifier-guided search can keep them out."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.prm import load_prm
from sal_core.prm.server import SalServerPRM
from sal_core.prm.verifier import FALSE, VerifierPRM
from sal_core.search import SEARCHES
from sal_core.search.steps import Shard
from sal_core.serving.launch import start_server, stop_server
from sal_core.settings.endpoint import build_servers
from sal_core.settings.jobs import GenerateJob, ModelSettings, PRMSettings, SearchSettings
from sal_core.tables import read_metadata, read_table, write_table_atomic

VERIFIER = PRMSettings(name="verifier", type="verifier")
PROBLEMS = ["Add up the numbers.", "Sum the pairs."]
PROMPTS = [f"Problem: {p}\nSolution:\n" for p in PROBLEMS]
SUM = re.compile(r"= (\d+)\$")


class ArithmeticPolicy(GenerationBackend):
    """Two sums, then the boxed value of the last one: a sum is right when the request's seed is even,
    one too many when odd; records every step it writes."""

    max_model_len = 10_000
    tokenizer = None

    def __init__(self) -> None:
        self.written: list[str] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        return [self.step(request) for request in requests]

    def step(self, request: GenerationRequest) -> GenerationOutput:
        prefix = next(request.prompt[len(p) :] for p in PROMPTS if request.prompt.startswith(p))
        done = prefix.count("\n\n")
        if done >= 2:
            text, reason = f"Therefore, the final answer is: $\\boxed{{{SUM.findall(prefix)[-1]}}}$.", "eos"
        else:
            a, b = 3 + done, 4 + 2 * done
            text, reason = f"Add them: ${a} + {b} = {a + b + request.seed % 2}$.", "stop"
            text += "\n\n" if "\n\n" in request.stop else ""
        self.written.append(text)
        return GenerationOutput(text, len(text.split()), reason)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prompt_length(self, prompt: str) -> int:
        return len(prompt.split())

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        """One id per word: the search budgets prompts by their ids (search.continuation)."""
        return [[0] * self.prompt_length(prompt) for prompt in prompts]


def search(method: str, **overrides) -> tuple[list, ArithmeticPolicy]:
    settings = {"method": method, "n": 4, "num_iterations": 4, "max_tokens": 50, "beam_width": 2, **overrides}
    if method == "particle_filtering":
        settings.pop("beam_width")
    policy = ArithmeticPolicy()
    shard = Shard(PROBLEMS, PROMPTS, SearchSettings.from_dict(settings), policy, VerifierPRM(VERIFIER))
    return SEARCHES[method](shard), policy


def false_steps(text: str) -> int:
    return VerifierPRM(VERIFIER).score(["p"], [[text]])[0][0].count(FALSE)


def test_beam_search_guided_by_the_verifier_prefers_true_sums() -> None:
    """Beam search keeps n / beam_width of n beams a step, so a false sum survives when fewer true ones
    were sampled; but the kept beams hold far fewer false sums than the policy writes, and each
    problem's best completion (by the weakest step, `aggregation: min`) none."""
    results, policy = search("beam_search", n=8, aggregation="min")
    written = sum(false_steps(step) for step in policy.written) / len(policy.written)
    kept = [false_steps(c) for r in results for c in r.completions]
    assert written > 0.3 and sum(kept) / (3 * len(kept)) < written / 3
    for result in results:
        assert len(result.completions) == 8 and all("\\boxed{" in c for c in result.completions)
        best = max(range(8), key=lambda j: min(result.search_scores[j]))
        assert false_steps(result.completions[best]) == 0
        assert result.prm_tokens == 0  # the verifier reads no tokens


@pytest.mark.parametrize(("method", "settings"), [("dvts", {"beam_width": 4}), ("particle_filtering", {})])
def test_dvts_and_particles_under_the_verifier_record_its_scores(method: str, settings: dict) -> None:
    results, policy = search(method, **settings)
    assert any(false_steps(step) for step in policy.written)
    verifier = VerifierPRM(VERIFIER)
    for result in results:
        assert result.prm_tokens == 0
        assert result.search_scores == verifier.score(["p"], [result.completions])[0]
    if method == "particle_filtering":  # the highest-weight particle holds no false sum
        assert all(false_steps(r.completions[r.selected]) == 0 for r in results)


def test_sal_score_scores_a_shard_with_the_verifier(tmp_path: Path) -> None:
    from sal_core.pipeline.score import score_shard

    completions = [["$2 + 2 = 4$\n\nSo $\\boxed{4}$.", "$2 + 2 = 5$\n\nSo $\\boxed{5}$."], ["No numbers."]]
    frame = pd.DataFrame({"problem_id": ["a", "b"], "problem": ["2+2?", "?"], "answer": ["4", "1"]})
    frame["completions"] = completions
    write_table_atomic(frame.assign(level=None), tmp_path / "completions.parquet")
    score_shard(tmp_path / "completions.parquet", VERIFIER, tmp_path / "scores.parquet")
    scores = read_table(tmp_path / "scores.parquet")
    assert [[list(s) for s in row] for row in scores["scores"]] == [[[0.95, 0.95], [0.05, 0.95]], [[0.5]]]
    assert scores["prm_tokens"].tolist() == [0, 0]


def test_a_generate_job_guided_by_the_verifier_and_sal_score_reusing_its_scores(tiny_model_path, tmp_path) -> None:
    """Through the pipeline: the job loads the verifier beside the policy, records its step scores and
    0 PRM tokens, and `sal score` with the same verifier reuses the search's scores."""
    from sal_core.pipeline.generate import generate_shard
    from sal_core.pipeline.score import score_shard

    frame = pd.DataFrame(
        {"problem_id": ["a", "b"], "problem": ["What is 2 + 3?", "What is 7 - 4?"], "answer": ["5", "3"]}
    )
    write_table_atomic(frame.assign(level=None), tmp_path / "problems.parquet")
    model = ModelSettings(name="tiny", path=str(tiny_model_path), max_model_len=512, batch_size=8)
    search = SearchSettings.from_dict({"method": "particle_filtering", "n": 4, "num_iterations": 2, "max_tokens": 8})
    generate_shard(tmp_path / "problems.parquet", 0, 2, GenerateJob(model, search, VERIFIER), tmp_path / "c.parquet")
    shard = read_table(tmp_path / "c.parquet")
    assert shard["prm_tokens"].tolist() == [0, 0]
    for completions, scores in zip(shard["completions"], shard["search_scores"], strict=True):
        assert [list(s) for s in scores] == VerifierPRM(VERIFIER).score(["p"], [list(completions)])[0]
    score_shard(tmp_path / "c.parquet", VERIFIER, tmp_path / "s.parquet")
    assert read_metadata(tmp_path / "s.parquet")["reused"] == "search"


def test_served_verifier_scores_as_in_process(tmp_path: Path) -> None:
    args = ["--prm", json.dumps(asdict(VERIFIER)), "--max-request-items", "4"]
    process, _ = start_server("serve-prm", args, tmp_path / "service.json", tmp_path / "server.log")
    try:
        servers = build_servers({"verifier": {"service_file": str(tmp_path / "service.json")}})
        client = load_prm(PRMSettings(name="verifier", type="server", served_model="verifier"), servers)
        assert isinstance(client, SalServerPRM)
        texts = [["$6 \\times 5 = 30$\n\n$\\boxed{30}$", "$6 \\times 5 = 31$", "", "\\boxed{" * 3], ["1 + 1 = 2"] * 5]
        assert client.score_with_tokens(["a", "b"], texts) == VerifierPRM(VERIFIER).score_with_tokens(["a", "b"], texts)
    finally:
        stop_server(process)
