"""Grading final answers with math-verify, in killable worker processes so no answer can hang a run.

Each problem is one task: its distinct final-answer strings (most frequent first) are parsed once
and sorted into equivalence classes with the same checker that decides correctness. Class 0 has
the gold answer as its representative, so "correct" is exactly "in class 0": majority voting and
correctness can never disagree. A parent-side watchdog reads each worker's heartbeat (which
answer, since when) from shared memory and kills the worker when one check overruns the limit;
that answer becomes its own, wrong class, is counted as a timeout, and the problem is re-sent.
math-verify's own signal-based timeout is switched off: it cannot interrupt C-level sympy work.
"""

from __future__ import annotations

import cmath
import contextlib
import logging
import multiprocessing as mp
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection, wait

from tqdm import tqdm

NO_ANSWER = -1  # class id of a completion with no extractable final answer
GOLD = -1  # answer index of the gold answer in heartbeats and skipped checks
PARSE = -1  # partner id of a parse check (comparisons name the class they compare with)
_BOXED = ("\\boxed", "\\fbox")
#: a dedup key that starts with this is the last paragraph of a completion without a box, read by
#: math-verify's default extraction (LaTeX anywhere, then plain-text expressions), HTML exponents as exponents
TEXT = "\x00text:"
#: a dedup key that starts with this is read exactly as math-verify's `parse` reads it with its
#: default settings (the `math-verify` grader): no HTML rewriting, no box required
MATH_VERIFY = "\x00math-verify:"
_SUP = re.compile(r"<sup>\s*(.*?)\s*</sup>", re.IGNORECASE | re.DOTALL)
_TOKEN = re.compile(r"-?\w+")
# math-verify warns that its own timeout is off; here the worker watchdog replaces it
logging.getLogger("math_verify").setLevel(logging.ERROR)


def last_boxed(text: str | None) -> str | None:
    """Content of the last `\\boxed{…}` (or `\\fbox{…}`) in `text`, braces matched; None if absent.

    This is only the dedup key (identical strings are graded once); math-verify parses it.
    """
    if not text:
        return None
    start = max(text.rfind(tag) for tag in _BOXED)
    while start >= 0:
        tag = next(t for t in _BOXED if text.startswith(t, start))
        i = start + len(tag)
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        content = text[i + 1 : j].strip()
                        return content or None
                j += 1
        # unbalanced or brace-less box: fall back to the previous box
        start = max(text.rfind(t, 0, start) for t in _BOXED)
    return None


@dataclass
class ProblemGrade:
    """Grades of one problem's distinct answers: a class id each (0 = gold's class = correct)."""

    classes: list[int]
    #: checks (parses or comparisons) of this problem that hit the time limit
    timeouts: int = 0
    gold_failed: bool = False


def html_exponents(text: str, latex: bool = True) -> str:
    """An exponent written in HTML, as models trained on web text write them, as an exponent:
    `2<sup>10</sup>` -> `2^{10}` in LaTeX (a box's content); in plain text `2^10` (math-verify's
    expression reader stops at a brace), `2^(n+1)` for more than one token."""
    if "<sup" not in text.lower():
        return text
    if latex:
        return _SUP.sub(lambda m: "^{" + m.group(1) + "}", text)
    return _SUP.sub(lambda m: "^" + (m.group(1) if _TOKEN.fullmatch(m.group(1)) else "(" + m.group(1) + ")"), text)


def answer_key(text: str | None) -> str | None:
    """The dedup key of a completion's final answer for the default grader: the last box's content,
    else its last paragraph (after the last blank line; TEXT-marked) for math-verify's default
    extraction, so an answer given in a closing sentence counts but a number in an unfinished
    solution's working does not; None when there is neither."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    tail = text.strip().rsplit("\n\n", 1)[-1].strip() if text else ""
    return TEXT + tail if tail else None


@lru_cache(maxsize=200_000)
def _parse(answer: str) -> list:
    """math-verify's parse of one answer key; cached, as answers like "12" recur across problems.

    A plain key is a box's content, read as LaTeX (HTML exponents rewritten); a TEXT key is a whole
    completion without a box, read by math-verify's default extraction; a MATH_VERIFY key exactly as
    math-verify's `parse` reads it by default.
    """
    from math_verify import LatexExtractionConfig, parse

    if answer.startswith(MATH_VERIFY):
        return parse(answer[len(MATH_VERIFY) :], parsing_timeout=None)
    if answer.startswith(TEXT):
        return parse(html_exponents(answer[len(TEXT) :], latex=False), parsing_timeout=None)
    config = [LatexExtractionConfig(boxed_match_priority=0)]
    return parse("\\boxed{" + html_exponents(answer) + "}", config, parsing_timeout=None)


def _point(name: str) -> float:
    """A fixed, irrational-looking value per symbol name, the same in every process."""
    return 0.6180339887 + 0.0931 * (sum(map(ord, name)) % 29)


@lru_cache(maxsize=200_000)
def _numeric(answer: str) -> complex | None:
    """A numeric fingerprint of an expression answer, or None (relations, sets, bare symbols, percents).

    Closed-form numbers give their value; expressions in symbols are evaluated with every symbol
    at a fixed point, so two expressions that differ there cannot be identical functions.
    """
    from sympy import Expr, Symbol, UnevaluatedExpr

    parsed = _parse(answer)
    expr = parsed[0] if parsed else None
    if not isinstance(expr, Expr) or isinstance(expr, Symbol) or expr.has(UnevaluatedExpr):
        return None
    try:
        if expr.free_symbols:
            expr = expr.subs({s: _point(s.name) for s in expr.free_symbols})
        if not expr.is_number:
            return None
        value = complex(expr.evalf(20))
    except (TypeError, ValueError, OverflowError, ArithmeticError, AttributeError, RecursionError):
        return None
    return value if cmath.isfinite(value) else None


def _surely_different(a: complex | None, b: complex | None) -> bool:
    """Two fingerprints far apart mean verify would say "different", so it is not called.

    For these answer types verify's "equal" needs string/structural equality, a numeric difference
    that vanishes at 6 decimals, or simplify(a - b) == 0; all imply (nearly) equal fingerprints.
    A gap above 1e-4 relative (or absolute, below 1) is far outside that.
    """
    if a is None or b is None:
        return False
    return abs(a - b) > 1e-4 * max(1.0, abs(a), abs(b))


def _exact(parsed: list):
    """The value when the answer is an exact rational number (sympy Integer/Rational), else None.

    For two such answers math-verify's `verify` is exactly value equality (string compare, then
    exact numeric compare, no float rounding), so they are grouped by value without a call.
    """
    from sympy import Float, Rational

    if parsed and isinstance(parsed[0], Rational) and not isinstance(parsed[0], Float):
        return parsed[0]
    return None


def _equal(rep: list, parsed: list) -> bool:
    from math_verify import verify

    return bool(verify(rep, parsed, timeout_seconds=None))


class _Classes:
    """Equivalence classes built so far for one problem: each class's parsed representative, its
    numeric fingerprint, and the class of every exact rational value seen."""

    def __init__(self, skip: frozenset[tuple[int, int]], beat: Callable[[int, int], None]) -> None:
        self.skip, self.beat = skip, beat
        self.reps: list[list | None] = [None]  # class id -> parsed representative (0: gold)
        self.values: list[complex | None] = [None]  # class id -> numeric value of the representative
        self.exact: dict = {}  # exact value -> class id

    def add_gold(self, gold: str) -> bool:
        """Make the gold answer class 0's representative; False when it does not parse."""
        self.beat(GOLD, PARSE)
        parsed = _parse(gold)
        if not parsed:
            return False
        self.reps[0], self.values[0] = parsed, _numeric(gold)
        value = _exact(parsed)
        if value is not None:
            self.exact[value] = 0
        return True

    def classify(self, idx: int, answer: str) -> int:
        """The class of answer `idx`: the first class whose representative verify() matches, else a new one."""
        if (idx, PARSE) in self.skip:
            return self._new(None, None, None)  # its own class, never matched again
        self.beat(idx, PARSE)
        parsed = _parse(answer)
        if not parsed:
            return NO_ANSWER
        value, number = _exact(parsed), _numeric(answer)
        found = self._find(idx, parsed, value, number)
        return found if found is not None else self._new(parsed, number, value)

    def _find(self, idx: int, parsed: list, value, number: complex | None) -> int | None:
        by_value = self.exact.get(value) if value is not None else None
        for cls, rep in enumerate(self.reps):
            if by_value is not None and cls >= by_value:
                return by_value
            if rep is None or (idx, cls) in self.skip:
                continue
            if value is not None and _exact(rep) is not None:
                continue  # two exact numbers: equal only by value, handled by self.exact
            if _surely_different(self.values[cls], number):
                continue
            self.beat(idx, cls)
            if _equal(rep, parsed):
                return cls
        return None

    def _new(self, parsed: list | None, number: complex | None, value) -> int:
        self.reps.append(parsed)
        self.values.append(number)
        if value is not None:
            self.exact[value] = len(self.reps) - 1
        return len(self.reps) - 1


def grade_problem(
    gold: str,
    answers: Sequence[str],
    skip: frozenset[tuple[int, int]] = frozenset(),
    beat: Callable[[int, int], None] = lambda i, c: None,
) -> ProblemGrade:
    """Sort `answers` into equivalence classes; class 0 is the gold answer's.

    An answer joins the first class (in creation order) whose representative it matches with
    `verify(representative, answer)`; gold is representative 0, so class 0 = `verify(gold, answer)`.
    `skip` holds checks that timed out before, as (answer index or GOLD, class id or PARSE): a
    timed-out parse makes the answer its own wrong class, a timed-out comparison counts as "not equal".
    """
    found = _Classes(skip, beat)
    gold_failed = (GOLD, PARSE) in skip or not found.add_gold(gold)
    classes = [found.classify(idx, answer) for idx, answer in enumerate(answers)]
    return ProblemGrade(classes, len(skip), gold_failed)


def _worker(conn: Connection, beats, slot: int) -> None:
    """Grade tasks from `conn` until None; heartbeat = (answer index, check start) in `beats`."""

    def beat(answer: int, partner: int) -> None:
        beats[3 * slot] = answer
        beats[3 * slot + 1] = partner
        beats[3 * slot + 2] = time.monotonic()

    while True:
        task = conn.recv()
        if task is None:
            return
        task_id, gold, answers, skip = task
        grade = grade_problem(gold, answers, skip, beat)
        beats[3 * slot + 2] = 0.0
        conn.send((task_id, grade))


class _Slot:
    """One worker process, its pipe and the task it is on."""

    def __init__(self, ctx, beats, index: int) -> None:
        self.ctx, self.beats, self.index = ctx, beats, index
        self.task: tuple | None = None
        self.start()

    def start(self) -> None:
        self.beats[3 * self.index + 2] = 0.0
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.beats, self.index), daemon=True)
        self.proc.start()
        child.close()

    def restart(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()
        self.start()

    def send(self, task: tuple) -> None:
        self.task = task
        self.conn.send(task)


def worker_context():
    # fork: workers inherit the already-imported sympy (spawn would re-import it on every restart)
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def grade_all(
    golds: Sequence[str],
    answers: Sequence[Sequence[str]],
    timeout: float = 5.0,
    workers: int = 2,
    progress: bool = True,
) -> list[ProblemGrade]:
    """Grade every problem (gold, distinct answers) in `workers` processes, each check capped at `timeout` s."""
    _parse("\\frac{1}{2}")  # load sympy and the LaTeX parser before forking, so workers start warm

    ctx = worker_context()
    beats = ctx.Array("d", 3 * max(1, workers), lock=False)
    slots = [_Slot(ctx, beats, i) for i in range(max(1, workers))]
    results: list[ProblemGrade | None] = [None] * len(golds)
    skips: dict[int, frozenset[tuple[int, int]]] = {}
    pending = list(range(len(golds)))[::-1]
    bar = tqdm(total=len(golds), desc="grading", unit="problem", disable=not progress)
    try:
        while pending or any(s.task is not None for s in slots):
            for slot in slots:
                if slot.task is None and pending:
                    i = pending.pop()
                    slot.send((i, golds[i], list(answers[i]), skips.get(i, frozenset())))
            busy = {s.conn: s for s in slots if s.task is not None}
            for conn in wait(list(busy), timeout=min(0.05, timeout / 4)):
                slot = busy[conn]
                try:
                    task_id, grade = conn.recv()
                except (EOFError, OSError):  # the worker died (e.g. out of memory inside sympy)
                    _blame(slot, skips, pending, timeout, died=True)
                    continue
                results[task_id] = grade
                slot.task = None
                bar.update()
            now = time.monotonic()
            for slot in slots:
                started = beats[3 * slot.index + 2]
                if slot.task is not None and started > 0 and now - started > timeout:
                    _blame(slot, skips, pending, timeout, died=False)
    finally:
        bar.close()
        for slot in slots:
            with contextlib.suppress(BrokenPipeError, OSError):
                slot.conn.send(None)
            slot.proc.join(timeout=1)
            if slot.proc.is_alive():
                slot.proc.kill()
                slot.proc.join()
    return [r for r in results if r is not None]


def _blame(
    slot: _Slot, skips: dict[int, frozenset[tuple[int, int]]], pending: list[int], timeout: float, died: bool
) -> None:
    """Kill the worker, mark the answer it was checking as timed out, and re-queue its problem."""
    slot.proc.kill()
    slot.proc.join()
    task_id, gold, answers, _ = slot.task
    check = (int(slot.beats[3 * slot.index]), int(slot.beats[3 * slot.index + 1]))
    started = slot.beats[3 * slot.index + 2]
    # a check that began just before the kill is not to blame: re-run the problem unchanged
    if died or (started > 0 and time.monotonic() - started > timeout):
        skip = skips.get(task_id, frozenset())
        if check in skip:  # a worker that keeps dying without progress: give up on the problem
            check = (GOLD, PARSE)
            skip |= {(i, PARSE) for i in range(len(answers))}
        skips[task_id] = skip | {check}
    slot.task = None
    slot.restart()
    pending.append(task_id)
