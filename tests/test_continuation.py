"""Exact continuation (`search.continuation: exact`) against search-and-learn's re-encoding.

SmolLM2's tokenizer encodes a trailing "\\n\\n" as one token (1116) where the model writes "\\n" "\\n"
(198, 198) before "Therefore"; re-encoding the text so far hands it 1116 at every step boundary.
The fast tests use that real tokenizer (the tiny model's) and engine; the slow ones the real SmolLM2:
greedy one-beam search, DVTS and particle filtering write what greedy whole-solution generation
writes, up to each method's finish rule, and re-encoding does not (its boundary count says why).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from continuation_helpers import check_prefix, default_job, default_problems, greedy_whole

from sal_core.backends.base import GenerationOutput, GenerationRequest
from sal_core.errors import ConfigError, ServerError
from sal_core.search import run_search
from sal_core.search.continuation import Continuation
from sal_core.search.steps import states_answer
from sal_core.settings.jobs import SearchSettings

NEWLINE, BLANK_LINE, THREE_NEWLINES = 198, 1116, 16506
ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path):
    """The tiny model in the transformers engine: SmolLM2's real tokenizer."""
    from sal_core.backends import load_backend
    from sal_core.settings.jobs import ModelSettings

    return load_backend(ModelSettings(name="tiny", path=str(tiny_model_path), device="cpu", max_model_len=1024))


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return tiny.tokenizer


def test_the_tokenizer_has_the_artefact(tokenizer) -> None:
    """The premise, on SmolLM2's real tokenizer: a trailing blank line is one token, inside a text two."""
    assert tokenizer.encode("$.\n\n")[-1] == BLANK_LINE
    assert tokenizer.encode("\n\nTherefore")[:2] == [NEWLINE, NEWLINE]
    assert tokenizer.encode("\n\n\n") == [THREE_NEWLINES]


def test_exact_contexts_carry_the_generated_ids_and_reencoding_counts_changed_boundaries(tiny, tokenizer) -> None:
    step = tuple(tokenizer.encode("$2 + 3 = 5$.")) + (NEWLINE, NEWLINE)
    text = tokenizer.decode(list(step))
    for mode, expected_changed in (("exact", 0), ("reencode", 1)):
        cont = Continuation.for_prompts(tiny, ["Solution:"], mode)
        (ids,) = cont.contexts([(0, "Solution:" + text, [step])], True)
        if mode == "exact":
            assert ids == cont.prompt_ids[0] + step
        else:
            assert ids[-1] == BLANK_LINE and ids[: len(cont.prompt_ids[0])] == cont.prompt_ids[0]
        assert (cont.changed, cont.boundaries) == (expected_changed, 0 if mode == "exact" else 1)
    # a boundary re-encoding keeps: counted, not changed
    cont = Continuation.for_prompts(tiny, ["Solution:"], "reencode")
    kept = tuple(tokenizer.encode(" 5"))
    cont.contexts([(0, "Solution: 5", [kept])], True)
    assert (cont.changed, cont.boundaries) == (0, 1)


def test_a_step_ending_inside_a_token_keeps_the_whole_token_in_exact_mode(tiny, tokenizer) -> None:
    """The engine stops on "\\n\\n" completed by "\\n\\n\\n" and cuts its text there; exact mode keeps the
    token, so the step's text is its ids' decode (one newline past the stop), and the next step's
    text starts where that decode ends: the partial solution's text is always its ids' decode."""
    cont = Continuation.for_prompts(tiny, ["Solution:"], "exact")
    first = tuple(tokenizer.encode("$1 + 1 = 2$.")) + (THREE_NEWLINES,)
    out = GenerationOutput("$1 + 1 = 2$.\n\n", len(first), "stop", first)
    kept = cont.extended([], out)
    assert kept.text == "$1 + 1 = 2$.\n\n\n" and kept.token_ids == first
    second = tuple(tokenizer.encode("Therefore"))
    nxt = cont.extended([first], GenerationOutput("Therefore", len(second), "stop", second))
    assert kept.text + nxt.text == tokenizer.decode(list(first + second))
    assert Continuation.for_prompts(tiny, ["x"], "reencode").extended([], out) is out


def test_exact_mode_refuses_an_engine_without_ids_in_one_line(tiny, tokenizer) -> None:
    cont = Continuation.for_prompts(tiny, ["x"], "exact")
    with pytest.raises(ServerError, match=r"^search.continuation exact: the engine returned no token ids") as err:
        cont.extended([], GenerationOutput("a", 1, "stop", None))
    assert "\n" not in str(err.value)


def test_the_setting_is_refused_without_steps_and_stays_out_of_identity_at_reencode() -> None:
    with pytest.raises(ConfigError, match=r"^approaches.bon.continuation: for step-wise searches only"):
        SearchSettings.from_dict({"method": "best_of_n", "n": 4, "continuation": "exact"}, "approaches.bon")
    with pytest.raises(ConfigError, match=r"^search.continuation: 'ids' is not one of reencode, exact"):
        SearchSettings.from_dict({"method": "dvts", "n": 4, "continuation": "ids"}, "search")
    beam = {"method": "beam_search", "n": 4}
    assert "continuation" not in SearchSettings.from_dict(beam, "search").identity()
    assert SearchSettings.from_dict({**beam, "continuation": "exact"}, "search").identity()["continuation"] == "exact"


def test_the_transformers_engine_keeps_the_token_that_completes_a_stop(tiny) -> None:
    """vLLM's rule: ids up to the token that completed the stop string, the text cut at the string."""
    backend = tiny
    head = backend.model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[THREE_NEWLINES] = 100.0
    backend.model.lm_head = biased
    try:
        (out,) = backend.generate([GenerationRequest("1 + 1 =", 0.0, max_tokens=5, stop=("\n\n",))])
    finally:
        backend.model.lm_head = head
    assert (out.text, out.token_ids, out.finish_reason, out.num_tokens) == ("\n\n", (THREE_NEWLINES,), "stop", 1)


# -- the real SmolLM2-135M: greedy step-wise search against greedy whole-solution generation ----------

#: each method with its finish rule: beam search and DVTS stop at "boxed{" here, particles at "\\boxed"
METHODS = ("beam_search", "dvts", "particle_filtering")
STEPWISE = {"max_tokens": 32, "num_iterations": 2, "stop_at_boxed": True, "lookahead": 0}


@pytest.fixture(scope="module")
def smollm2(smollm2_path: Path):
    from sal_core.backends import load_backend
    from sal_core.prm import load_prm

    job = default_job(smollm2_path, "beam_search")
    return smollm2_path, load_backend(job.model), load_prm(job.prm)


@pytest.mark.slow
def test_greedy_stepwise_search_writes_the_greedy_whole_solution_only_with_exact_continuation(smollm2, caplog) -> None:
    """n = 1, one beam, no lookahead, no binding budget: every method's exact text begins the greedy
    whole solution and states its boxed answer; re-encoding parts from it (the control) and counts
    changed boundaries."""
    path, backend, prm = smollm2
    problems = default_problems(1)
    job = default_job(path, "beam_search", **STEPWISE)
    prompts, whole = greedy_whole(backend, job, problems, 80)
    for method in METHODS:
        exact = run_search(problems, default_job(path, method, continuation="exact", **STEPWISE), backend, prm)
        for prompt, out, result in zip(prompts, whole, exact, strict=True):
            (text,) = result.completions
            assert states_answer(text), f"{method}: {text!r}"
            check_prefix(backend, prompt, out.token_ids, text, f"{method} exact")
        caplog.clear()
        with caplog.at_level("INFO", logger="sal_core.search.continuation"):
            reencoded = run_search(
                problems, default_job(path, method, continuation="reencode", **STEPWISE), backend, prm
            )
        texts = [r.completions[0] for r in reencoded]
        assert not any(out.text.startswith(t) for out, t in zip(whole, texts, strict=True)), texts
        (line,) = [r.getMessage() for r in caplog.records if "re-encoding changed" in r.getMessage()]
        changed, total = (int(w) for w in line.split("changed the ids at ")[1].split(" step")[0].split(" of "))
        assert 0 < changed <= total, line


@pytest.mark.slow
def test_embedded_default_greedy_one_beam_boxes_the_whole_solutions_answer(smollm2) -> None:
    """config/config.yaml's beam search (its steps, iterations, prompt and exact continuation), greedy
    with one beam, boxes the answer greedy whole-solution generation boxes, on all 4 problems."""
    from sal_core.evaluation.grading import last_boxed

    path, backend, prm = smollm2
    problems = default_problems(4)
    job = default_job(path, "beam_search")
    assert job.search.continuation == "exact"  # config/config.yaml's own setting
    _, whole = greedy_whole(backend, job, problems, 64)
    results = run_search(problems, job, backend, prm)
    answers = [last_boxed(r.completions[0].split("\n\nProblem:")[0]) for r in results]
    expected = [last_boxed(out.text.split("\n\nProblem:")[0]) for out in whole]
    assert None not in expected and answers == expected


def test_sal_serve_returns_the_ids_it_generated(tiny, tiny_model_path: Path, tmp_path: Path) -> None:
    """`return_token_ids` through `sal serve` and the openai backend: the in-process engine's ids."""
    from sal_core.backends import load_backend
    from sal_core.serving.launch import start_server, stop_server
    from sal_core.settings.endpoint import build_servers
    from sal_core.settings.jobs import ModelSettings

    model = {"name": "tiny", "path": str(tiny_model_path), "device": "cpu", "max_model_len": 64}
    process, _ = start_server("serve", ["--model", json.dumps(model)], tmp_path / "svc.json", tmp_path / "log", env=ENV)
    try:
        remote = ModelSettings.from_dict({**model, "backend": "openai", "served_model": "tiny"})
        served = load_backend(remote, build_servers({"tiny": {"service_file": str(tmp_path / "svc.json")}}))
        requests = [GenerationRequest("1 + 1 =", 0.7, max_tokens=6, seed=s, stop=("\n\n",)) for s in range(3)]
        got = served.generate(requests)
        assert [o.token_ids for o in got] == [o.token_ids for o in tiny.generate(requests)]
        assert all(o.token_ids for o in got)
    finally:
        stop_server(process)


@pytest.mark.slow
def test_exact_continuation_through_sal_serve_writes_the_greedy_whole_solution(smollm2, tmp_path: Path) -> None:
    """The same greedy DVTS through `sal serve` (ids from `return_token_ids`): the whole solution's text."""
    from sal_core.backends import load_backend
    from sal_core.serving.launch import start_server, stop_server
    from sal_core.settings.endpoint import build_servers

    path, backend, prm = smollm2
    problems = default_problems(1)
    job = default_job(path, "dvts", continuation="exact", **STEPWISE)
    prompts, whole = greedy_whole(backend, job, problems, 80)
    served_model = {"name": job.model.name, "path": str(path), "device": "cpu", "max_model_len": 2048}
    args = ["--model", json.dumps(served_model)]
    process, _ = start_server("serve", args, tmp_path / "svc.json", tmp_path / "log", env=ENV)
    try:
        remote = replace(job.model, backend="openai", served_model=job.model.name)
        served = load_backend(remote, build_servers({job.model.name: {"service_file": str(tmp_path / "svc.json")}}))
        (result,) = run_search(problems, replace(job, model=remote), served, prm)
    finally:
        stop_server(process)
    (text,) = result.completions
    assert states_answer(text)
    check_prefix(backend, prompts[0], whole[0].token_ids, text, "dvts exact through sal serve")


def test_exact_label_rollouts_continue_from_the_completions_ids(tiny, tiny_model_path: Path, tmp_path: Path) -> None:
    """`labeling.continuation: exact`: a rollout continues from the prompt's ids and the completion's
    own ids up to the token that ends step d's blank line ("\\n" "\\n" before a word, not the 1116 a
    re-encoded trailing blank line becomes); re-encoding sends that 1116. Same labels otherwise."""
    import pandas as pd

    from sal_core.learn.label_steps import LabelSettings, label_steps
    from sal_core.settings.jobs import ModelSettings

    completion = "## Step 1: Add\n$2 + 3 = 5$.\n\nTherefore, the final answer is: $\\boxed{5}$."
    path = tmp_path / "completions.parquet"
    pd.DataFrame({"problem": ["What is $2 + 3$?"], "answer": ["5"], "completions": [[completion]]}).to_parquet(path)
    model = ModelSettings(name="tiny", path=str(tiny_model_path), device="cpu", max_model_len=1024)
    sent: dict[str, list[GenerationRequest]] = {}
    generate = tiny.generate
    for mode in ("exact", "reencode"):
        tiny.generate = lambda requests, mode=mode: sent.setdefault(mode, list(requests)) and generate(requests)
        try:
            label_steps(path, model, LabelSettings(k=1, max_tokens=4, continuation=mode), tmp_path / "s.jsonl", 1, tiny)
        finally:
            tiny.generate = generate
    (exact,), (reencoded,) = sent["exact"], sent["reencode"]
    assert exact.prompt_token_ids[-2:] == (NEWLINE, NEWLINE) and exact.prompt.endswith("5$.\n\n")
    assert reencoded.prompt_token_ids[-1] != NEWLINE and reencoded.prompt.endswith("5$.")
    assert "continuation" not in LabelSettings().identity()
