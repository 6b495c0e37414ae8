"""Exact arithmetic in a solution's text: notation normalised, tokens, and an expression's value.

`normalise` rewrites plain-text and LaTeX arithmetic (integers, decimals, `1,000` thousands separators,
`\\frac{a}{b}` / `\\dfrac` / `\\tfrac`, mixed numbers, `%`, `\\times`, `\\cdot`, `\\div`, `×`, `÷`,
`*`, `/`, a lone `x` between numbers, `≈` / `\\approx`) as a few operators; `evaluate` computes an
expression's tokens with `fractions.Fraction` (never floats: `0.1 + 0.2 = 0.3` holds), with the usual
precedence, unary signs, postfix `%` and implicit multiplication before a parenthesis that touches
what it multiplies (`2(3 + 4)`; `(1/2) (1/3)` with a space reads as two expressions, not a product). What counts as
a claim is sal_core/prm/claims.py's business.
"""

from __future__ import annotations

import re
from fractions import Fraction

#: notation turned into the operators the parser reads (order matters: longer commands first)
REPLACEMENTS = (
    (r"\\left|\\right", ""),
    (r"\\\$", " "),
    (r"\$", " "),
    (r"\\\(|\\\)|\\\[|\\\]", " ; "),  # display and inline math delimiters end an expression
    (r"\\%", "%"),
    (r"\{,\}|(?<=\d)\\,(?=\d{3})", ","),
    (r"\\[,;:! ]|~|\\quad|\\qquad", " "),
    (r"\*\*", " "),  # markdown bold, not a power
    (r"\\times|\\cdot|×|·|∙", "*"),
    (r"\\div|÷", "/"),
    (r"−", "-"),
    (r"\\approx|\\sim|≃|≈", " ≈ "),
    (r"(?<=%)\s*of\b", " * "),
    (r"(?<=\d)\s*[xX]\s*(?=\d)", " * "),
)
TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
FRACTION = re.compile(r"(\d*)\s*\\[dt]?frac\s*(?:\{([^{}]*)\}|(\d))\s*(?:\{([^{}]*)\}|(\d))")
TOKEN = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<op>[-+*/%()])|(?P<eq>=)|(?P<space>[ \t]+)|(?P<other>.)",
    re.S,
)


class Unparsed(ValueError):
    """A side, or a boxed answer, that looks like arithmetic but cannot be evaluated."""


def normalise(text: str) -> str:
    """LaTeX and unicode notation rewritten as plain arithmetic; words and unknown commands kept."""
    previous = None
    while previous != text:
        previous, text = text, TEXT_COMMAND.sub(r" \1 ", text)
    previous = None
    while previous != text:
        previous, text = text, FRACTION.sub(_fraction, text)
    for pattern, replacement in REPLACEMENTS:
        text = re.sub(pattern, replacement, text)
    return text


def _fraction(match: re.Match[str]) -> str:
    whole, top, bottom = match[1], match[2] or match[3], match[4] or match[5]
    quotient = f"(({top})/({bottom}))"
    return f"({whole}+{quotient})" if whole else quotient


def tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: num, op, eq, space, other (any other character, `≈` and newlines included)."""
    return [(m.lastgroup or "other", m.group()) for m in TOKEN.finditer(text)]


def evaluate(side: list[tuple[str, str]]) -> Fraction:
    """The exact value of an expression's tokens (spaces allowed); Unparsed if it is not one."""
    for k, (_, text) in enumerate(side[2:], 2):
        if text == "(" and side[k - 1][0] == "space" and side[k - 2][1] not in "+-*/(":
            raise Unparsed("a value and a parenthesis apart: two expressions, not a product")
    parser = _Parser([t for t in side if t[0] != "space"])
    value = parser.expression()
    if parser.pos != len(parser.items):
        raise Unparsed(f"unexpected {parser.items[parser.pos][1]!r}")
    return value


class _Parser:
    """Recursive descent: expression = term (+|- term)*; term = unary (*|/ unary | implicit '(')*;
    unary = (+|-) unary | primary %*; primary = number | ( expression )."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items, self.pos = items, 0

    def peek(self) -> str | None:
        return self.items[self.pos][1] if self.pos < len(self.items) else None

    def take(self) -> tuple[str, str]:
        if self.pos >= len(self.items):
            raise Unparsed("expression ends early")
        self.pos += 1
        return self.items[self.pos - 1]

    def expression(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take()[1] == "+" else value - self.term()
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/", "("):
            operator = self.take()[1] if self.peek() != "(" else "*"
            right = self.unary()
            if operator == "/" and right == 0:
                raise Unparsed("division by zero")
            value = value / right if operator == "/" else value * right
        return value

    def unary(self) -> Fraction:
        if self.peek() in ("+", "-"):
            return -self.unary() if self.take()[1] == "-" else self.unary()
        value = self.primary()
        while self.peek() == "%":
            self.take()
            value /= 100
        return value

    def primary(self) -> Fraction:
        kind, text = self.take()
        if kind == "num":
            return Fraction(text.replace(",", ""))
        if text == "(":
            value = self.expression()
            if self.take()[1] != ")":
                raise Unparsed("unbalanced parenthesis")
            return value
        raise Unparsed(f"unexpected {text!r}")
