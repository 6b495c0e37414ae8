"""Ours against its_hub 1.2.0's own particle filtering / particle Gibbs (issue 20).

tests/fixtures/its_hub_particles/expected.json holds what its_hub computed on the scripted policy and
PRM of scripted.py, with its random draws replaced by ours (make_expected.py says how and the
command). Ours runs the same problems, all three in one shard, and must give the same resampling
probabilities and draws at every step of every sweep, the same final particles (duplicates and
order included), the same log weights and the same choice; and each particle's finish reason is what
ended it (issue 27: cases with tempered weights and with particles ending on EOS and the token limit).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.its_hub_particles import scripted
from test_particles import run, settings

from sal_core.constants import STEP_LIMIT
from sal_core.search import particles as particles_module
from sal_core.search.resampling import RESAMPLE, draw_seed, log_weight

EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "its_hub_particles" / "expected.json").read_text())


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> dict[int, tuple]:
    """Every resampling draw ours makes, by seed: (probabilities, drawn indices). Delegates."""
    seen: dict[int, tuple] = {}
    real = particles_module.resample

    def recorded(log_weights, k, seed, scheme, temperature):
        drawn, probs = real(log_weights, k, seed, scheme, temperature)
        seen[seed] = (list(probs), list(drawn))
        return drawn, probs

    monkeypatch.setattr(particles_module, "resample", recorded)
    return seen


def test_the_fixture_comes_from_its_hub_1_2_0():
    assert EXPECTED["its_hub"] == "1.2.0"
    assert set(EXPECTED["cases"]) >= {"filtering", "systematic_sample", "step_limit", "gibbs", "gibbs_two_refs"}
    assert set(EXPECTED["cases"]) >= {"tempered_sample", "endings", "gibbs_endings_tempered"}  # issue 27


@pytest.mark.parametrize("name", sorted(EXPECTED["cases"]))
def test_ours_resamples_and_returns_what_its_hub_does(name, draws):
    case = EXPECTED["cases"][name]
    results, _, _ = run(settings(**{"max_tokens": 100, **case["settings"]}), endings=case.get("endings", False))
    seed, temperature = case["settings"]["seed"], case["settings"].get("weight_temperature", 1.0)
    for row, (ours, theirs) in enumerate(zip(results, case["problems"], strict=True)):
        for sweep, (probs, drawn) in enumerate(zip(theirs["probabilities"], theirs["drawn"], strict=True)):
            assert len(ours.ess[sweep]) == len(probs), f"{name} row {row} sweep {sweep}: steps"
            for step, (p, d) in enumerate(zip(probs, drawn, strict=True)):
                got_p, got_d = draws[draw_seed(seed, row, sweep, step, RESAMPLE)]
                assert got_p == pytest.approx(p, rel=1e-12, abs=1e-15), f"{name} row {row} sweep {sweep} step {step}"
                assert got_d == d, f"{name} row {row} sweep {sweep} step {step}"
                assert ours.ess[sweep][step] == pytest.approx(1 / np.sum(np.square(p)), rel=1e-12)
        # its_hub returns each particle's steps joined by the step token, without the last one's
        assert [c.removesuffix(scripted.SEPARATOR) for c in ours.completions] == theirs["responses"]
        assert [len(scripted.split(c)) for c in ours.completions] == theirs["steps_used"]
        assert [log_weight(s[-1]) for s in ours.search_scores] == pytest.approx(theirs["log_weights"], rel=1e-12)
        shifted = np.exp((np.asarray(theirs["log_weights"]) - max(theirs["log_weights"])) / temperature)
        assert ours.weights == pytest.approx(list(shifted / shifted.sum()), rel=1e-12)
        assert ours.selected == theirs["selected"]
        assert ours.finish_reasons == [finish_reason(c) for c in ours.completions], f"{name} row {row}"


def finish_reason(text: str) -> str:
    """What ended a scripted particle, read off its last step: the boxed stop token, end-of-sequence,
    the token limit (a cut step) or else the step limit."""
    last = scripted.split(text)[-1]
    if scripted.STOP_TOKEN in last:
        return "stop"
    if last == scripted.EOS_STEP:
        return "eos"
    return "length" if last not in scripted.STEPS else STEP_LIMIT


def test_the_cases_exercise_what_they_are_named_for():
    """The fixture is not trivial: particles are resampled into other slots, some stop at the step
    limit, references are drawn and cut back, and sample selection does not always take the argmax."""
    cases = EXPECTED["cases"]
    assert any(d != sorted(d) or len(set(d)) < len(d) for p in cases["filtering"]["problems"] for d in p["drawn"][0])
    limit = cases["step_limit"]["settings"]["num_iterations"]
    assert any(used == limit for p in cases["step_limit"]["problems"] for used in p["steps_used"])
    refs = [p for name in ("gibbs", "gibbs_two_refs") for p in cases[name]["problems"]]
    assert all(p["reference_indices"] for p in refs)
    sampled = cases["systematic_sample"]["problems"] + cases["gibbs_two_refs"]["problems"]
    assert any(p["selected"] != int(np.argmax(p["log_weights"])) for p in sampled)
    tempered = [
        (c, p) for c in cases.values() if c["settings"].get("weight_temperature", 1) != 1 for p in c["problems"]
    ]
    assert {c["settings"]["weight_temperature"] for c, _ in tempered} == {0.5, 2.0}
    # unequal weights, so a temperature ignored would change the probabilities the main test compares
    assert all(any(max(q) - min(q) > 0.01 for q in p["probabilities"][0]) for _, p in tempered)
    last = [
        scripted.split(r)[-1] for c in cases.values() if c.get("endings") for p in c["problems"] for r in p["responses"]
    ]
    assert scripted.EOS_STEP in last  # particles ending on end-of-sequence ...
    assert any(step not in scripted.STEPS and step != scripted.EOS_STEP for step in last)  # ... and on the token limit
