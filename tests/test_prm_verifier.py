"""The verifier PRM (sal_core/prm/verifier.py, claims.py, arithmetic.py; issue 27 item 2): what it calls
true, false and nothing to check, on a table of step texts each with its source; whole completions
carry the last value from step to step; text it cannot read scores neutral, is counted and logged,
never raises; ProcessBench's real solutions are never called false before their first error but in
the one step where ProcessBench's label misses an arithmetic error; its settings need no model."""

from __future__ import annotations

import json
import logging
import random
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from sal_core.errors import ConfigError
from sal_core.prm import load_prm
from sal_core.prm.arithmetic import Unparsed, evaluate, normalise, tokens
from sal_core.prm.claims import check_step
from sal_core.prm.verifier import CHECKED, FALSE, NEUTRAL, VerifierPRM, step_score
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config
from sal_core.settings.jobs import PRMSettings

REPO = Path(__file__).resolve().parent.parent
PROCESSBENCH = [json.loads(line) for line in (REPO / "sal_core/builtin/processbench/subset.jsonl").open()]
STEP_OF = {(row["id"], k): step for row in PROCESSBENCH for k, step in enumerate(row["steps"])}
SETTINGS = PRMSettings(name="verifier", type="verifier")

ISSUE = "issue 27: SmolLM2-135M's greedy solution of arith_heldout's 'What is $6 \\times 5$?'"
GSM8K = "GSM8K train #0's solution line (openai/grade-school-math, its <<calculator>> annotations)"
PB = "ProcessBench subset (sal_core/builtin/processbench/subset.jsonl) "
HAND = "hand-made: "


def case(source: str, text: str, score: float, counts=(0, 0, 0), last=None, boxed=None):
    """One row: where the text comes from, the step, its score, (claims true, false, unreadable), the
    last value before it and the boxed answer's verdict."""
    return pytest.param(source, text, last, score, counts, boxed, id=text[:40])


CASES = [
    case(ISSUE, "$6 \\times 5 = 30$.", CHECKED, (1, 0, 0)),
    case(ISSUE, "Therefore, the final answer is: $\\boxed{30}$.", CHECKED, last=Fraction(30), boxed=True),
    case(ISSUE, "30 is the final answer.", NEUTRAL, last=Fraction(30)),
    case(HAND + "an answer that is not the value computed", "So $\\boxed{35}$.", FALSE, last=Fraction(30), boxed=False),
    case(HAND + "an answer with nothing computed before it", "$\\boxed{35}$", NEUTRAL),
    case(
        HAND + "units dropped from the answer", "$\\boxed{18 \\text{ dollars}}$", CHECKED, last=Fraction(18), boxed=True
    ),
    case(HAND + "a percentage answer", "$\\boxed{25\\%}$", CHECKED, last=Fraction(1, 4), boxed=True),
    case(HAND + "an answer it cannot read", "$\\boxed{\\frac{\\sqrt{3}}{2}}$", NEUTRAL, (0, 0, 1), last=Fraction(1)),
    case(HAND + "an answer right after = is the claim's side", "So $3 + 4 = \\boxed{8}$.", FALSE, (0, 1, 0)),
    case(GSM8K, "Natalia sold 48/2 = <<48/2=24>>24 clips in May.", CHECKED, (1, 0, 0)),
    case(GSM8K, "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.", CHECKED, (1, 0, 0)),
    case(HAND + "GSM8K's format, a wrong result", "She sold 48+24 = <<48+24=62>>62 clips.", FALSE, (0, 1, 0)),
    # gsm8k-202 step 1, a correct step: words in parentheses end an expression
    case(PB + "gsm8k-202", STEP_OF["gsm8k-202", 1], CHECKED, boxed=True),
    # math-427 step 3, its labelled first error: 8 * 27 * 25 is 5400
    case(PB + "math-427", STEP_OF["math-427", 3], FALSE, (0, 1, 2)),
    # omnimath-998 step 3: 47.25 * 8.75 is 413.4375, an error its label (step 6) misses
    case(PB + "omnimath-998", STEP_OF["omnimath-998", 3], FALSE, (2, 1, 1)),
    # math-484 step 0, a correct step: "= 13 remainder 4" is no equality
    case(PB + "math-484", STEP_OF["math-484", 0], NEUTRAL),
    # math-820 step 5, a correct step: fraction claims between display-math delimiters
    case(PB + "math-820", STEP_OF["math-820", 5], CHECKED, (3, 0, 0)),
    case(HAND + "a definition is no claim", "Let $x = 5$.", NEUTRAL),
    case(HAND + "algebra is not arithmetic", "Then $x + 3 = 8$.", NEUTRAL),
    case(HAND + "words end an expression", "3 apples cost 3 × 2 = 6 dollars.", CHECKED, (1, 0, 0)),
    case(HAND + "a unit before an operator: no minus sign", "8 apples - 3 = 5 apples.", NEUTRAL),
    case(HAND + "a time is not a number", "From 1:30 + 2 = 3:30 it is two hours.", NEUTRAL),
    case(HAND + "precedence", "$2 + 3 \\times 4 = 14$", CHECKED, (1, 0, 0)),
    case(HAND + "left-to-right reading is false", "$2 + 3 \\times 4 = 20$", FALSE, (0, 1, 0)),
    case(HAND + "parentheses", "$(2 + 3) \\cdot 4 = 20$", CHECKED, (1, 0, 0)),
    case(HAND + "implicit product with a parenthesis", "$2(3 + 4) = 14$", CHECKED, (1, 0, 0)),
    case(HAND + "a chain, every side equal", "$a + b = 2 + 3 = 5 = 10 \\div 2$", CHECKED, (1, 0, 0)),
    case(HAND + "a chain with one false link", "$2 + 3 = 5 = 6$", FALSE, (0, 1, 0)),
    case(HAND + "thousands separators", "The total is 1,000 + 250 = 1,250.", CHECKED, (1, 0, 0)),
    case(HAND + "thin-space and {,} separators", "$1\\,000 + 1{,}500 = 2500$", CHECKED, (1, 0, 0)),
    case(HAND + "exact decimals (floats: 0.30000000000000004)", "$0.1 + 0.2 = 0.3$", CHECKED, (1, 0, 0)),
    case(HAND + "percent of", "20% of 50 = 10", CHECKED, (1, 0, 0)),
    case(HAND + "fractions", "$\\dfrac{1}{2} + \\frac13 = \\frac{5}{6}$", CHECKED, (1, 0, 0)),
    case(HAND + "a mixed number", "$2\\frac{1}{2} + 1 = 3.5$", CHECKED, (1, 0, 0)),
    case(HAND + "unicode operators and minus", "12 × 4 = 48, 48 ÷ 6 = 8; −3 + 5 = 2", CHECKED, (3, 0, 0)),
    case(HAND + "a lone x between numbers multiplies", "3 x 4 = 12", CHECKED, (1, 0, 0)),
    case(HAND + "markdown bold is no power", "**Step 1:** 12 * 4 = 48**", CHECKED, (1, 0, 0)),
    case(HAND + "an escaped dollar sign", "The total is $12 \\cdot 5 = \\$60$.", CHECKED, (1, 0, 0)),
    case(HAND + "approximately is not compared", "$10 / 3 \\approx 3.33$ and $10/3 ≈ 3.3$", NEUTRAL),
    case(HAND + "a rounded decimal is neither", "Each gets $10 / 3 = 3.33$ dollars.", NEUTRAL),
    case(HAND + "a rounded decimal that is wrong", "Each gets $10 / 3 = 3.34$ dollars.", FALSE, (0, 1, 0)),
    case(HAND + "a false claim beside a true one decides", "$2 + 2 = 4$ and $3 + 3 = 7$.", FALSE, (1, 1, 0)),
    case(HAND + "notation it does not read is counted", "$2^3 = 8$ and $\\sqrt{16} = 4$", NEUTRAL, (0, 0, 2)),
    case(HAND + "division by zero is unreadable, not false", "$5 \\div 0 = 0$", NEUTRAL, (0, 0, 1)),
    case(HAND + "a side between two = left empty", "$3 == 3 + 1$", NEUTRAL, (0, 0, 1)),
]


@pytest.mark.parametrize(("source", "text", "last", "score", "counts", "boxed"), CASES)
def test_each_step_is_scored_by_what_it_claims(source, text, last, score, counts, boxed) -> None:
    check = check_step(text, last)
    assert (check.true, check.false, check.unparsed) == counts, source
    assert check.boxed is boxed, source
    assert step_score(check) == score, source


def test_the_arithmetic_is_exact_with_precedence() -> None:
    def value(text: str) -> Fraction:
        return evaluate(tokens(normalise(text)))

    assert value("1 - 2 - 3") == -4 and value("12 / 4 / 3") == 1 and value("-(2 + 3) * 2") == -10
    assert value("\\frac{\\frac{1}{2}}{3}") == Fraction(1, 6) and value("50%") == Fraction(1, 2)
    assert value("2 \\times (3 + 4) \\div 7") == 2 and value("1,234.5 - 0.5") == 1234
    for bad in ("3 +", "(3 + 4", "3 4", "3 / (2 - 2)", "", "(1/2) (1/3)"):
        with pytest.raises(Unparsed):
            value(bad)


def test_a_completion_carries_the_last_value_from_step_to_step() -> None:
    prm = VerifierPRM(SETTINGS)
    right = "We need $6 \\times 5$.\n\n$6 \\times 5 = 30$.\n\nTherefore, the final answer is: $\\boxed{30}$."
    wrong = "$6 \\times 5 = 30$.\n\nSo we add one: $30 + 1 = 31$.\n\nTherefore, the final answer is: $\\boxed{30}$."
    scored = prm.score_with_tokens(["What is $6 \\times 5$?"] * 2, [[right, wrong], []])
    assert scored.scores == [[[NEUTRAL, CHECKED, CHECKED], [CHECKED, CHECKED, FALSE]], []]
    assert scored.tokens == [[0, 0], []]  # it reads no tokens and charges none
    assert prm.counts["steps"] == 6 and prm.counts["false"] == 1


def test_it_does_not_read_the_problem() -> None:
    """No oracle: the same solution scores alike whatever problem it is given for."""
    prm = VerifierPRM(SETTINGS)
    text = ["$2 + 2 = 4$\n\nSo $\\boxed{4}$."]
    assert prm.score(["What is 2 + 2?"], [text]) == prm.score(["What is 9 + 9?"], [text])


def test_unreadable_text_scores_neutral_is_counted_and_logged_and_never_raises(caplog) -> None:
    prm = VerifierPRM(SETTINGS)
    rng = random.Random(27)
    alphabet = "0123456789+-*/=()%.,{}\\$^ x≈\n" + "".join(chr(c) for c in range(0x20, 0x7F))
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(300)]
    texts += ["(" * 5000 + "1" + ")" * 5000 + " = 1", "\\boxed{" * 50, "\\frac{" * 40 + "= 3", "1" * 5000 + " + 1 = 2"]
    with caplog.at_level(logging.INFO, logger="sal_core.prm.verifier"):
        scores = prm.score(["p"], [texts])
    assert all(s in (FALSE, CHECKED, NEUTRAL) for text in scores[0] for s in text)
    assert scores[0][-4] == [NEUTRAL] and prm.counts["unparsed"] > 0
    assert any(f"{prm.counts['unparsed']} unreadable" in r.message for r in caplog.records)


def test_processbench_solutions_are_not_called_false_before_their_first_error() -> None:
    """On the 200 human-labelled solutions (4 sources, 1351 steps, 903 before a first error): no claim
    before the labelled first error is called false but where ProcessBench's label misses an arithmetic
    error; 6 boxed answers reached in words (claims.py) are compared with an older value and called
    false; three labelled first errors are arithmetic it catches."""
    prm = VerifierPRM(SETTINGS)
    false_claims, false_answers, caught = [], [], []
    for row in PROCESSBENCH:
        scores = prm.score([row["problem"]], [["\n\n".join(row["steps"])]])[0][0]
        assert len(scores) == len(row["steps"]), row["id"]
        label = row["label"] if row["label"] >= 0 else len(scores)
        for k in (k for k in range(label) if scores[k] == FALSE):
            (false_claims if check_step(row["steps"][k]).false else false_answers).append((row["id"], k))
        caught += [row["id"]] if label < len(scores) and scores[label] == FALSE else []
    assert false_claims == [("omnimath-998", 3)]
    assert sorted(false_answers) == [
        ("math-613", 8),
        ("olympiadbench-625", 4),
        ("omnimath-565", 7),
        ("omnimath-759", 8),
        ("omnimath-777", 12),
        ("omnimath-924", 11),
    ]
    assert caught == ["math-427", "olympiadbench-15", "omnimath-235"]


def test_the_settings_need_no_model_and_load_without_one() -> None:
    prm = load_prm(PRMSettings.from_dict({"name": "v", "type": "verifier"}))
    assert isinstance(prm, VerifierPRM)
    with pytest.raises(ConfigError, match=r"^prm\.path: type verifier loads no model"):
        PRMSettings.from_dict({"name": "v", "type": "verifier", "path": "some/model"})
    with pytest.raises(ConfigError, match=r"^prm\.step_layout: search-and-learn has no verifier PRM"):
        PRMSettings.from_dict({"name": "v", "type": "verifier", "step_layout": "sal"})


def test_a_config_guides_and_scores_with_the_verifier_and_a_path_is_one_clear_error() -> None:
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["prms"]["check"] = {"type": "verifier"}
    config["search_prm"], config["score_prms"] = "check", ["check", "tiny-judge"]
    grid = check_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    guided = [run for run in grid.runs if run.job.prm is not None]
    assert guided and all(run.run_id.endswith(".check") for run in guided)
    assert all('"type":"verifier"' in to_json(run.job) for run in guided)
    for entry in ({"type": "verifier", "prepare": "tiny-random"}, {"type": "verifier", "path": "org/model"}):
        config["prms"]["check"] = entry
        with pytest.raises(ConfigError, match=r"^prms\.check\.path: type verifier loads no model"):
            check_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
