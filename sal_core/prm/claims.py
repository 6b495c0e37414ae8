"""What one solution step claims about arithmetic, checked exactly: the verifier PRM's reading of a step.

A claim is an `=` between two arithmetic expressions, or a chain of them (`2 + 3 = 5 = 10 / 2`: every
side equal), in plain text or LaTeX (sal_core/prm/arithmetic.py reads the notation and computes with
`fractions.Fraction`). An expression is a run of numbers and operators; a word ends it, so
`3 apples cost 3 × 2 = 6 dollars` claims `3 × 2 = 6`. Conservative on purpose, so that a true step is
never called false:

- a side that touches a letter, or starts with an operator after a word (`x = 5`, `x + 3 = 8`, `15cm`,
  `8 apples - 3 = 5`), belongs to algebra or units: dropped, not checked (a definition is no claim);
  so does one touching a colon (`1:30 + 2`, a time or a ratio);
- a side that touches notation the parser does not read (`2^3`, `\\sqrt{16}`, `5!`) is dropped and
  counted as unparsed; so is a chain with a side that does not parse or divides by zero;
- `≈`, `\\approx`, `\\sim` end a chain: nothing across them is compared;
- a decimal written with d places that is the other side rounded to d places (`10 / 3 = 3.33`) is
  rounding, neither true nor false;
- a chain whose sides are all bare numbers (`1 = 1`) computes nothing and is not a claim;
- a last side followed by `remainder`, `R` or `with` (`225 ÷ 17 = 13 remainder 4`) is dropped.

The boxed answer (`\\boxed{...}`: units and `\\text{}` dropped, `x = 5` read as 5, `18\\%` as 18 or
0.18) written right after `=` is that claim's last side. Any other is compared with the last value the
solution stated before it: the readable last side of the last `=` in this step or an earlier one (a
claim's result, or a definition's value: `so n = 16`). With none yet there is nothing to compare. An
answer reached in words only (`the smallest is 16`) is compared with the value stated before it, and
can be called false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from sal_core.prm.arithmetic import Unparsed, evaluate, normalise, tokens

Token = tuple[str, str]
#: token kinds an expression (or a chain of them) is made of
EXPRESSION = ("num", "op", "eq", "space")
#: characters that, touching an expression, make it part of notation the parser does not read
UNREAD = set("^_{}\\!|'")
BOXED = re.compile(r"\\boxed\s*\{")
AFTER_EQUALS = re.compile(r"=\s*(?:\$|\\\(|\\\[)?\s*$")
#: characters that, touching a first side, make its first number part of another (`1:30 + 2`, `1.5.2`)
TIME_OR_DECIMAL = ".:"
#: words after a result that make it something other than the value of the other side
NOT_EQUAL_AFTER = ("remainder", "r", "rem", "with")


@dataclass
class StepCheck:
    """What one step holds: claims that hold exactly, false ones, rounded ones, sides or answers it
    could not read, the boxed answer's verdict (None: none, or nothing to compare it with) and the last
    value computed so far."""

    true: int = 0
    false: int = 0
    rounded: int = 0
    unparsed: int = 0
    boxed: bool | None = None
    last: Fraction | None = None


def check_step(step: str, last: Fraction | None = None) -> StepCheck:
    """Check every claim of `step` and its boxed answer; `last`: the value the earlier steps computed last."""
    check = StepCheck(last=last)
    rest, answers = cut_boxed(step)
    items = tokens(normalise(rest))
    start = 0
    while start < len(items):
        end = start
        while end < len(items) and items[end][0] in EXPRESSION:
            end += 1
        if end > start and any(kind == "eq" for kind, _ in items[start:end]):
            check_chain(items, start, end, check)
        start = end + 1
    for answer in answers:
        check_answer(answer, check)
    return check


def cut_boxed(step: str) -> tuple[str, list[str]]:
    """The step without its `\\boxed{...}` parts (each replaced by a boundary), and their contents; a
    boxed answer right after `=` stays in the text, unwrapped, as the last side of that claim."""
    answers, pieces, pos = [], [], 0
    for match in BOXED.finditer(step):
        if match.start() < pos:
            continue
        depth, k = 1, match.end()
        while k < len(step) and depth:
            depth += {"{": 1, "}": -1}.get(step[k], 0)
            k += 1
        content = step[match.end() : k - 1 if depth == 0 else k]
        if AFTER_EQUALS.search(step[pos : match.start()]):
            pieces.append(f"{step[pos : match.start()]} {content} ")  # `3 + 4 = \boxed{7}`: a claim's side
        else:
            answers.append(content)
            pieces.append(step[pos : match.start()] + " ; ")
        pos = k
    return "".join(pieces) + step[pos:], answers


def check_chain(items: list[Token], start: int, end: int, check: StepCheck) -> None:
    """One run of numbers, operators and `=` (items[start:end]): its sides checked against each other."""
    sides: list[list[Token]] = [[]]
    for item in items[start:end]:
        if item[0] == "eq":
            sides.append([])
        else:
            sides[-1].append(item)
    before = items[start - 1][1] if start > 0 else "\n"
    after = items[end][1] if end < len(items) else "\n"
    sides = trim_ends(sides, before, after, check)
    if sides and following_word(items, end) in NOT_EQUAL_AFTER:
        sides = sides[:-1]  # `225 / 17 = 13 remainder 4`
    if not sides:
        return
    try:
        values = [evaluate(side) for side in sides]
    except Unparsed:
        check.unparsed += 1
        return
    check.last = values[-1]  # a definition's value too (`x = 5`): the last value the solution stated
    if len(sides) < 2:
        return
    if not any(computes(side) for side in sides):
        return
    pairs = zip(sides[:-1], sides[1:], values[:-1], values[1:], strict=True)
    verdicts = [pair_verdict(a, b, va, vb) for a, b, va, vb in pairs]
    if "false" in verdicts:
        check.false += 1
    elif "rounded" in verdicts:
        check.rounded += 1
    else:
        check.true += 1


def trim_ends(sides: list[list[Token]], before: str, after: str, check: StepCheck) -> list[list[Token]]:
    """The sides left once an incomplete first or last side is dropped (see the module docstring);
    none when a middle side is empty (`3 == 3`), which is counted as unparsed."""
    first, last = strip(sides[0]), strip(sides[-1])
    touches_before = bool(sides[0]) and sides[0][0][0] != "space"
    touches_after = bool(sides[-1]) and sides[-1][-1][0] != "space"
    if before in UNREAD and (touches_before or not first):
        check.unparsed += 1
    if after in UNREAD and touches_after:
        check.unparsed += 1
    drop_first = (
        not first
        or touches_before
        and (before.isalnum() or before in UNREAD or before in TIME_OR_DECIMAL)
        or first[0][1] in "+*/%)"
        or first[0][1] == "-"
        and before.isalpha()
    )
    touching = touches_after and (after.isalnum() or after in UNREAD or after == ":")
    drop_last = not last or touching or last[-1][1] in "+-*/("
    kept = sides[1 if drop_first else 0 : len(sides) - 1 if drop_last else len(sides)]
    if any(not strip(side) for side in kept):
        check.unparsed += 1
        return []
    return kept


def following_word(items: list[Token], end: int) -> str:
    """The word after items[end:] (spaces skipped), lower-cased; empty when none follows."""
    while end < len(items) and items[end][0] == "space":
        end += 1
    word = ""
    while end < len(items) and items[end][1].isalpha():
        word, end = word + items[end][1], end + 1
    return word.lower()


def strip(side: list[Token]) -> list[Token]:
    """A side without its spaces."""
    return [item for item in side if item[0] != "space"]


def computes(side: list[Token]) -> bool:
    """Whether a side is a computation rather than a bare number (a leading sign does not count)."""
    items = strip(side)
    while items and items[0][1] in "+-":
        items = items[1:]
    return any(kind == "op" for kind, _ in items)


def pair_verdict(a: list[Token], b: list[Token], va: Fraction, vb: Fraction) -> str:
    """`true` when two sides are equal, `rounded` when one is a decimal the other rounds to, else `false`."""
    if va == vb:
        return "true"
    for side, value, other in ((a, va, vb), (b, vb, va)):
        items = strip(side)
        if len(items) == 1 and items[0][0] == "num" and "." in items[0][1]:
            places = len(items[0][1].split(".")[1])
            if abs(value - other) <= Fraction(1, 2 * 10**places):
                return "rounded"
    return "false"


def check_answer(answer: str, check: StepCheck) -> None:
    """Compare one boxed answer with the last value computed; unreadable answers count as unparsed."""
    items = tokens(normalise(answer))
    if any(kind == "eq" for kind, _ in items):
        items = items[max(k for k, (kind, _) in enumerate(items) if kind == "eq") + 1 :]
    while items and (items[-1][0] == "space" or items[-1][1].isalpha() or items[-1][1] in ".°"):
        items = items[:-1]  # units and a full stop after the number
    percent = bool(items) and items[-1][1] == "%"
    try:
        value = evaluate(items[:-1] if percent else items)
    except Unparsed:
        check.unparsed += 1
        return
    if check.last is not None:
        matches = value == check.last or percent and value / 100 == check.last
        check.boxed = matches and check.boxed is not False
