"""Each PRM family's input, string by string, in both step layouts: "sal" as search-and-learn builds it
(`src/sal/models/reward_models.py`, `skywork_o1_prm/io_utils.py`; the expected strings below are
built from that recipe, not from our code) and "default" (empty steps dropped, model-card layouts).
Tiny models of every family with SmolLM2's byte-level tokenizer, which decodes to the exact text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_prm_families import _build

from sal_core.errors import ConfigError
from sal_core.pipeline.score import reusable_search_scores
from sal_core.prm import load_prm, scored_steps
from sal_core.settings.jobs import DEFAULT_SYSTEM_PROMPT, PRMSettings

Q = "What is 2+2?"
# a partial solution as a beam holds it: an empty chunk inside, and the trailing "\n\n" of its last step
PARTIAL = "## Step 1: Add\n2+2 = 4.\n\n\n\nNext.\n\n"
FINISHED = "## Step 1: Add\n2+2 = 4.\n\nSo $\\boxed{4}$."
SAL_QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
FAMILIES = ["rlhflow", "math-shepherd", "skywork", "qwen2.5-math"]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    tok.add_tokens(["ки", "<extra_0>"], special_tokens=True)
    return tok


@pytest.fixture(scope="module")
def prms(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], object]:
    root = tmp_path_factory.mktemp("layout-prms")
    out = {}
    for kind in FAMILIES:
        path = _build(kind, tokenizer, root / kind)
        for layout in ("default", "sal"):
            settings = PRMSettings(name=kind, type=kind, path=str(path), device="cpu", step_layout=layout)
            out[kind, layout] = load_prm(settings)
    return out


def _rlhflow_text(tokenizer, steps: list[str]) -> str:
    conversation = []
    for k, step in enumerate(steps):
        conversation += [{"role": "user", "content": Q + " " + step if k == 0 else step}]
        conversation += [{"role": "assistant", "content": "+"}]
    return tokenizer.apply_chat_template(conversation, tokenize=False)


def _qwen_text(tokenizer, answer: str) -> str:
    messages = [
        {"role": "system", "content": SAL_QWEN_SYSTEM},
        {"role": "user", "content": Q},
        {"role": "assistant", "content": answer},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def _expected(kind: str, layout: str, tokenizer, a: str) -> str:
    """The text a PRM of `kind` reads for answer `a`, written out from each layout's recipe."""
    paragraphs = [s for s in a.split("\n\n") if s.strip()]
    if kind == "rlhflow":  # search-and-learn: ans.split("\n\n"), empty steps kept
        return _rlhflow_text(tokenizer, a.split("\n\n") if layout == "sal" else paragraphs)
    if kind == "qwen2.5-math":
        answer = a.replace("\n\n", "<extra_0>") + "<extra_0>"
        return _qwen_text(tokenizer, answer if layout == "sal" else "".join(p + "<extra_0>" for p in paragraphs))
    if kind == "math-shepherd":
        if layout == "sal":
            tagged = a.replace("\n\n", " ки\n\n")
            tagged = tagged + " ки" if tagged[-2:] != "\n\n" else tagged
            return f"{DEFAULT_SYSTEM_PROMPT}\n{Q}\n {tagged}"
        return Q + " " + "\n".join(p + " ки" for p in paragraphs)
    units = a.split("\n") if layout == "sal" else paragraphs  # skywork: a line / a paragraph per step
    return (tokenizer.bos_token or "") + Q + "\n" + "".join(unit + "\n" for unit in units)


@pytest.mark.parametrize("answer", [PARTIAL, FINISHED], ids=["partial", "finished"])
@pytest.mark.parametrize("layout", ["sal", "default"])
@pytest.mark.parametrize("kind", FAMILIES)
def test_each_family_reads_its_layouts_text(prms, tokenizer, kind, layout, answer):
    prm = prms[kind, layout]
    encoded, n_steps = prm.encode_completion(Q, answer)
    assert tokenizer.decode(encoded.input_ids) == _expected(kind, layout, tokenizer, answer)
    assert n_steps == len(encoded.positions) == len(scored_steps(answer, kind, layout))
    # the score positions are the tokens each recipe reads
    ids = encoded.input_ids
    if kind == "rlhflow":
        assert {ids[p + 1] for p in encoded.positions} == {tokenizer.encode("+", add_special_tokens=False)[-1]}
    elif kind == "skywork":
        assert {ids[p] for p in encoded.positions} == set(tokenizer.encode("\n", add_special_tokens=False))
        if layout == "sal":  # search-and-learn's prepare_input, token by token
            want = tokenizer.encode(tokenizer.bos_token + Q + "\n", add_special_tokens=False)
            for line in answer.split("\n"):
                want += tokenizer.encode(line, add_special_tokens=False) + tokenizer.encode("\n")[-1:]
            assert ids == want
    else:
        tag = "ки" if kind == "math-shepherd" else "<extra_0>"
        assert [ids[p] for p in encoded.positions] == [tokenizer.convert_tokens_to_ids(tag)] * n_steps


def test_sal_layout_scores_a_partial_solution_on_its_empty_last_step(prms):
    """search-and-learn's "last" aggregation reads the judge after an empty trailing step."""
    for kind in ("rlhflow", "qwen2.5-math"):
        sal = prms[kind, "sal"].score([Q], [[PARTIAL]])[0][0]
        default = prms[kind, "default"].score([Q], [[PARTIAL]])[0][0]
        assert len(sal) == 4 and len(default) == 2  # "Add", "", "Next.", "" vs "Add", "Next."
        assert sal[0] == pytest.approx(default[0], abs=1e-5)
        assert sal[-1] != pytest.approx(default[-1], abs=1e-4)
    # Skywork: one score per line, blank ones and the empty tail included, against one per paragraph
    assert len(prms["skywork", "sal"].score([Q], [[PARTIAL]])[0][0]) == len(PARTIAL.split("\n")) == 8
    assert len(prms["skywork", "default"].score([Q], [[PARTIAL]])[0][0]) == 2


@pytest.mark.parametrize("kind", FAMILIES)
def test_tokens_read_are_the_inputs_length(prms, kind):
    for layout in ("default", "sal"):
        prm = prms[kind, layout]
        scored = prm.score_with_tokens([Q, Q], [[PARTIAL, FINISHED], [""]])
        want = [len(prm.encode_completion(Q, a)[0].input_ids) for a in (PARTIAL, FINISHED)]
        assert scored.tokens[0] == want
        # an empty completion: no step by default; one empty step for search-and-learn's layouts
        assert (scored.tokens[1][0] > 0) == (layout == "sal")


def test_sal_layout_needs_a_search_and_learn_family(tmp_path):
    with pytest.raises(ConfigError, match="prm.step_layout: search-and-learn has no trl PRM"):
        PRMSettings.from_dict({"name": "t", "type": "trl", "path": str(tmp_path), "step_layout": "sal"})
    with pytest.raises(ConfigError, match="prm.step_layout: 'paragraph' is not one of default, sal"):
        PRMSettings.from_dict({"name": "t", "type": "rlhflow", "path": str(tmp_path), "step_layout": "paragraph"})


def test_score_reuse_counts_steps_as_the_prm_splits_them(tmp_path):
    """`sal score` reuses in-search scores only when they cover the steps its PRM would score."""
    settings = PRMSettings(name="j", type="rlhflow", path=str(tmp_path), step_layout="sal")
    frame = pd.DataFrame({"completions": [[PARTIAL]], "search_scores": [[[0.1, 0.2, 0.3, 0.4]]]})
    meta = {"search_prm": settings.fingerprint()}
    assert reusable_search_scores(frame, meta, settings) == [[[0.1, 0.2, 0.3, 0.4]]]
    default = PRMSettings(name="j", type="rlhflow", path=str(tmp_path))
    assert reusable_search_scores(frame, {"search_prm": default.fingerprint()}, default) is None
