"""search-and-learn's answer equivalence, reimplemented for `--protocol sal`: grouping and grading.

- `canonical_form` groups votes like search-and-learn's `memoized_canonical_form`
  (`src/sal/utils/math.py`): LaTeX → sympy → `simplify` → LaTeX, or `strip_answer` of the input
  when parsing fails or overruns the time limit.
- `answers_equal` decides correctness like `math_equal` of its `qwen_math_parser.py` (the Qwen2.5-Math
  harness's grader, which search-and-learn's README sends its outputs to): case-insensitive string
  equality, numbers within 1e-4 relative (also against gold / 100 and × 100), bracket-insensitive
  strings, tuples and matrices element-wise, "k = v" against v, then sympy.

Where search-and-learn parses LaTeX with latex2sympy2 1.9.1, this uses latex2sympy2_extended (the
maintained fork that math-verify ships) configured like the original: no input normalisation,
`2\\frac{1}{2}` a product, symbols keep their case. sympy's `parse_latex` is not tried: in
search-and-learn's environment it always fails (latex2sympy2 pins antlr4 4.7.2; sympy needs 4.11).
Python-syntax answers go to sympy's `parse_expr` as there, but with no builtins and no attribute
access, as they are model output. Written from reading those files, not copied.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache

from antlr4 import InputStream
from antlr4.error.ErrorListener import ErrorListener
from latex2sympy2_extended.antlr_parser import PSLexer
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy
from sympy import Contains, Equality, Float, N, Rational, Set, Tuple, latex, simplify
from sympy.logic.boolalg import And, Or
from sympy.parsing.sympy_parser import parse_expr

from sal_core.evaluation.sal_answers import strip_answer

# latex2sympy2 1.9.1's reading: "2\\frac{1}{2}" a product, symbols keep their case, no implicit rewrites
_AS_1_9_1 = ConversionConfig(
    interpret_as_mixed_fractions=False,
    interpret_simple_eq_as_assignment=False,
    interpret_contains_as_eq=False,
    lowercase_symbols=False,
)
_UNREADABLE = (Set, Tuple, Contains, And, Or, list, tuple)
_CHOICES = ("A", "B", "C", "D", "E")
_UNSAFE = re.compile(r"__|\.\s*[A-Za-z_]|lambda")


class CheckTimeout(BaseException):
    """A sympy check ran past its time limit (BaseException: library `except Exception` must not eat it)."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise CheckTimeout in this block after `seconds` (SIGALRM; main thread only, else no limit).

    Python-level sympy work is interrupted; a single C-level operation (a huge integer power) is
    not: `sal_core.evaluation.sal_protocol` guards against those with a per-problem watchdog process.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _extended_parse(text: str):
    return latex2sympy(text, normalization_config=None, conversion_config=_AS_1_9_1)


def _latex_to_sympy(text: str):
    """LaTeX to sympy as latex2sympy2 1.9.1 (search-and-learn's pin) reads it, emulated on the maintained fork.

    Measured differences of 1.9.1 that change groups and grades, reproduced here: it reads the
    longest valid prefix and drops the rest ("9)\\cup(7" is 9, "1\\\\sqrt{19}" is 1) unless a
    character is no token at all ("3\\2" fails); "E" is its exponent marker (a bare "E" ends the
    input); it has no comma lists, sets, intervals, "\\pm" or chained relations (it fails); it
    reads "y = 2x" as 2x and fails on other equations; it fails on \\boxed; it keeps \\text{…} as
    one opaque symbol (here: unreadable, so it never equals a bare symbol); decimals stay exact.
    """
    if "\\boxed" in text or "\\text{" in text:  # 1.9.1 fails on boxes; \text{…} it keeps opaque, unlike the fork
        raise ValueError("read as latex2sympy2 1.9.1 would not")
    stop = _exponent_marker(text)
    if stop is not None:
        text = text[:stop]
    try:
        expr = _extended_parse(text)
    except Exception as error:  # the fork's error ends with a "~~~^" marker under the offending column
        marker = str(error).rsplit("\n", 1)[-1]
        if not re.fullmatch(r"~+\^", marker) or not _lexes(text):  # unknown tokens fail 1.9.1 outright
            raise
        expr = _extended_parse(text[: len(marker) - 1])
    if isinstance(expr, Equality):
        if not expr.lhs.is_Symbol:
            raise ValueError("latex2sympy2 1.9.1 reads only 'symbol = value' equations")
        expr = expr.rhs
    if isinstance(expr, _UNREADABLE):
        raise ValueError("latex2sympy2 1.9.1 has no sets, intervals, lists or chained relations")
    return expr.xreplace({f: Rational(str(f)) for f in expr.atoms(Float)}) if hasattr(expr, "atoms") else expr


class _Flag(ErrorListener):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e) -> None:  # noqa: N802 (antlr's name)
        self.failed = True


def _lexes(text: str) -> bool:
    """Whether every character of `text` forms a LaTeX token (an unknown command or symbol does not)."""
    lexer = PSLexer(InputStream(text))
    lexer.removeErrorListeners()
    flag = _Flag()
    lexer.addErrorListener(flag)
    lexer.getAllTokens()
    return not flag.failed


def _exponent_marker(text: str) -> int | None:
    """Where a bare "E" (not in a \\command, not scientific notation like 2E3) cuts 1.9.1's input."""
    for match in re.finditer("E", text):
        j = match.start()
        letters = re.search(r"[A-Za-z]*$", text[:j])
        if letters and text[: letters.start()].endswith("\\"):
            continue  # part of a command name
        if re.match(r"[\d.]", text[j - 1 : j]) and re.match(r"[+-]?\d", text[j + 1 :]):
            continue
        return j
    return None


@lru_cache(maxsize=1)
def _python_namespace() -> dict:
    """sympy's names for `parse_expr`, with no Python builtins reachable."""
    namespace: dict = {}
    exec("from sympy import *", namespace)  # a fixed import, no user input
    namespace["__builtins__"] = {}
    namespace.update(max=namespace["Max"], min=namespace["Min"], abs=namespace["Abs"])
    return namespace


def _python_to_sympy(text: str):
    if _UNSAFE.search(text):
        raise ValueError("refused: attribute access or lambda in an answer")
    return parse_expr(text, global_dict=dict(_python_namespace()))


def canonical_form(answer: str, timeout: float | None = 3.0, symbolic: bool = True) -> tuple[str, bool]:
    """(canonical string, timed out): sympy's LaTeX of the simplified answer, else `strip_answer(answer)`."""
    if symbolic:
        try:
            return _canonical(answer, timeout), False
        except CheckTimeout:
            return strip_answer(answer), True
    return strip_answer(answer), False


@lru_cache(maxsize=100_000)
def _canonical(answer: str, timeout: float | None) -> str:
    with deadline(timeout):
        try:
            return latex(simplify(_latex_to_sympy(answer)))
        except Exception:
            return strip_answer(answer)


def answers_equal(pred: str, ref: str, timeout: float | None = 3.0, symbolic: bool = True) -> tuple[bool, bool]:
    """(equal, timed out) for a normalised prediction and gold; a timed-out check is "not equal"."""
    try:
        with deadline(timeout):
            return _math_equal(pred, ref, symbolic), False
    except CheckTimeout:
        return False, True


def _number(text: str) -> float | None:
    """A float, commas ignored; "x%" (or "x\\%") as x / 100; None when it is no number."""
    text = text.replace(",", "")
    with contextlib.suppress(ValueError):
        return float(text)
    if text.endswith("%"):
        text = text[:-1].removesuffix("\\")
        with contextlib.suppress(ValueError):
            return float(text) / 100
    return None


def _close(a: float, b: float) -> bool:
    return math.isclose(b, a, rel_tol=1e-4)


def _choice(text: str) -> str:
    text = text.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", text.upper())
    return (letters[-1] if letters else text.strip().strip(".")).rstrip(".").rstrip("/")


def _math_equal(pred: str, ref: str, symbolic: bool) -> bool:
    if pred.strip().lower() == ref.strip().lower():
        return True
    if ref in _CHOICES and _choice(pred) == ref:
        return True
    pred_number, ref_number = _number(pred), _number(ref)
    if pred_number is not None and ref_number is not None:  # two numbers: decided here
        return any(_close(pred_number, r) for r in (ref_number / 100, ref_number, ref_number * 100))
    if not pred:
        return False
    pred, ref = pred.strip(), ref.strip()
    if "pmatrix" in pred and "pmatrix" not in ref:
        ref = _braces_to_pmatrix(ref)
    if _loosely_equal(pred, ref):
        return True
    if _elementwise_equal(pred, ref, symbolic):
        return True
    if _equation_equal(pred, ref, symbolic):
        return True
    return symbolic and _symbolic_equal(pred, ref)


def _braces_to_pmatrix(text: str) -> str:
    rows = re.findall(r"\{.*,.*\}", text.strip())
    return ", ".join("\\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + "\\end{pmatrix}" for m in rows)


def _loosely_equal(pred: str, ref: str) -> bool:
    """Equal once outer brackets (unless the kinds conflict) and all {}() are dropped, case ignored."""
    p, r = pred, ref
    if (p.startswith("[") and p.endswith("]") and not ref.startswith("(")) or (
        p.startswith("(") and p.endswith(")") and not ref.startswith("[")
    ):
        p, r = p.strip("[]()"), r.strip("[]()")
    drop = str.maketrans("", "", "{}()")
    return p.translate(drop).lower() == r.translate(drop).lower()


_TUPLE = re.compile(r"(\(|\[).+(\)|\])")
_MATRIX_START = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_MATRIX_END = ("\\end{pmatrix}", "\\end{bmatrix}")


def _elementwise_equal(pred: str, ref: str, symbolic: bool) -> bool:
    """Intervals/tuples by comma-separated parts; pmatrix/bmatrix by rows and cells."""
    if _TUPLE.match(pred) and _TUPLE.match(ref):
        p_parts, r_parts = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(p_parts) == len(r_parts) and all(
            _math_equal(p, r, symbolic) for p, r in zip(p_parts, r_parts, strict=True)
        ):
            return True
    if not all(x.startswith(_MATRIX_START) and x.endswith(_MATRIX_END) for x in (pred, ref)):
        return False
    inner = slice(len("\\begin{pmatrix}"), -len("\\end{pmatrix}"))
    p_rows, r_rows = ([line.strip() for line in x[inner].split("\\\\") if line.strip()] for x in (pred, ref))
    if len(p_rows) != len(r_rows):
        return False
    for p_row, r_row in zip(p_rows, r_rows, strict=True):
        p_cells, r_cells = p_row.split("&"), r_row.split("&")
        if len(p_cells) != len(r_cells):
            return False
        if not all(_math_equal(p, r, symbolic) for p, r in zip(p_cells, r_cells, strict=True)):
            return False
    return True


def _equation_equal(pred: str, ref: str, symbolic: bool) -> bool:
    """Two equations: lhs − rhs equal up to sign; "k = v" (short k) against a bare value: v."""
    if pred.count("=") == 1 and ref.count("=") == 1:
        if not symbolic:
            return False
        p_diff, r_diff = (f"{a.strip()} - ({b.strip()})" for a, b in (pred.split("="), ref.split("=")))
        return _symbolic_equal(p_diff, r_diff) or _symbolic_equal(f"-({p_diff})", r_diff)
    if pred.count("=") == 1 and len(pred.split("=")[0].strip()) <= 2 and "=" not in ref:
        return _math_equal(pred.split("=")[1], ref, symbolic)
    if ref.count("=") == 1 and len(ref.split("=")[0].strip()) <= 2 and "=" not in pred:
        return _math_equal(pred, ref.split("=")[1], symbolic)
    return False


def _parse_any(text: str):
    """The first of `parse_expr` and latex2sympy to read the text (``\\\\`` as ``\\`` tried first); else the text."""
    parsers: tuple[Callable, ...] = (_python_to_sympy, _latex_to_sympy)
    for parse in parsers:
        for variant in (text.replace("\\\\", "\\"), text):
            with contextlib.suppress(Exception):
                return parse(variant)
    return text


def _symbolic_equal(a: str, b: str) -> bool:
    """Same string or ==, `equals` or `simplify(a - b) == 0`, equal |lhs − rhs|, value to 1e-4, matrices to 3 places."""
    x, y = _parse_any(a), _parse_any(b)
    checks = (
        lambda: str(x) == str(y) or x == y,
        lambda: x.equals(y) or simplify(x - y) == 0,
        lambda: abs(x.lhs - x.rhs).equals(abs(y.lhs - y.rhs)),
        lambda: _close(float(N(x)), float(N(y))),
        lambda: x.shape == y.shape and x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3))),
    )
    for check in checks:
        with contextlib.suppress(Exception):
            if check():
                return True
    return False
