"""search-and-learn's final-answer extraction and string normalisation, reimplemented for `--protocol sal`.

These rules decide how `--protocol sal` groups completions into votes and whether a vote is correct,
so they follow search-and-learn's `src/sal/utils/qwen_math_parser.py` (`extract_answer(text, "math")`
and `strip_string`, adapted there from the Qwen2.5-Math evaluation harness) rule by rule and in the
same order, quirks included: unit words are removed as *unescaped* regular expressions between
non-word characters (so `1 \\pm \\sqrt{19}` loses its `pm`), "x = 5" becomes "5", "5.0" becomes "5",
`\\dfrac` becomes `\\frac`, a trailing `\\text{…}` unit is dropped and other `\\text{…}` unwrapped.
Written from reading that file, not copied; the unit-word list is its data. See docs/evaluation.md.
"""

from __future__ import annotations

import re
from functools import lru_cache

# MathQA unit words of the Qwen2.5-Math harness, in its order (order matters: removal is sequential);
# each is also removed in its plural form ("…s"), after all singulars.
_UNIT_WORDS = (  # noqa: SIM905 - one compact word list
    "east|degree|mph|kmph|ft|m sqaure| m east|sq m|deg|mile|q .|monkey|prime|ratio|profit of rs|rd|o|gm|"
    "p . m|lb|tile|per|dm|lt|gain|ab|way|west|a .|b .|c .|d .|e .|f .|g .|h .|t|a|h|no change|men|soldier|"
    "pie|bc|excess|st|inches|noon|percent|by|gal|kmh|c|acre|rise|a . m|th|π r 2|sq|mark|l|toy|coin|sq . m|"
    "gallon|° f|profit|minw|yr|women|feet|am|pm|hr|cu cm|square|v â € ™|are|rupee|rounds|cubic|cc|mtr|s|ohm|"
    "number|kmph|day|hour|minute|min|second|man|woman|sec|cube|mt|sq inch|mp|∏ cm ³|hectare|more|sec|unit|"
    "cu . m|cm 2|rs .|rs|kg|g|month|km|m|cm|mm|apple|liter|loss|yard|pure|year|increase|decrease|d|less|"
    "Surface|litre|pi sq m|s .|metre|meter|inch"
).split("|")
_UNITS = [*_UNIT_WORDS, *(w + "s" for w in _UNIT_WORDS)]
_UNIT_PATTERNS = [re.compile(r"(^|\W)" + unit + r"($|\W)") for unit in _UNITS]
# one search that matches wherever any single pattern would: lets most answers skip the 264 passes
_ANY_UNIT = re.compile(r"(?:^|\W)(?:" + "|".join(_UNITS) + r")(?:$|\W)")

_ONES = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
)
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBER_WORDS = {
    **dict(zip(_ONES, range(20), strict=True)),
    **dict(zip(_TENS, range(20, 100, 10), strict=True)),
    "hundred": 100,
    "thousand": 1000,
    "million": 1000000,
    "billion": 1000000000,
}
_SCALES = ("billion", "million", "thousand")
_VARIABLE_PREFIXES = ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to")


def extract_answer(text: str) -> str:
    """The normalised final answer of a completion, as search-and-learn's `extract_answer(text, "math")`.

    First match wins: Minerva's "final answer is $…$. I hope", the content after the last "boxed"
    (braces matched; unbalanced: the rest), text after "he answer is" / "final answer is", and else
    the last number in the text ("" when there is none). Then `strip_answer`.
    """
    text = text.replace("\u043a\u0438", "")  # Math-Shepherd step tags "ки"
    if "final answer is $" in text and "$. I hope" in text:
        raw = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        raw = _after_last_boxed(text)
    elif "he answer is" in text:
        raw = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        raw = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        raw = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        raw = numbers[-1] if numbers else ""
    return _finish(raw)


def _after_last_boxed(text: str) -> str:
    tail = text.split("boxed")[-1]
    if not tail:
        return ""
    if tail[0] != "{":
        return tail.split("$")[0].strip()
    depth = 1
    for i, char in enumerate(tail[1:], start=1):
        depth += (char == "{") - (char == "}")
        if depth == 0:
            return tail[1:i]
    return tail[1:]


@lru_cache(maxsize=100_000)
def _finish(raw: str) -> str:
    raw = re.sub(r"\n\s*", "", raw)
    if raw.startswith(":"):
        raw = raw[1:]
    if raw.endswith("."):
        raw = raw[:-1]
    if raw.endswith("/"):
        raw = raw[:-1]
    return strip_answer(raw)


@lru_cache(maxsize=100_000)
def strip_answer(answer: str) -> str:
    """search-and-learn's `strip_string` (units removed): the string both its voting and its grading compare."""
    s = str(answer).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    no_unit = re.sub(r"\\text\{.*?\}$", "", s).strip()  # from the first \text{ to a final }
    if no_unit not in ("", s):
        s = no_unit
    s = _drop_unit_words(s)
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _words_to_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in _VARIABLE_PREFIXES:
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    # (the source's "unwrap {…} when alphanumeric" rule can never fire: a braced string is not isalnum)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty").replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    return _finish_strip(s)


def _finish_strip(s: str) -> str:
    """The tail of `strip_answer`: leading dot, short "k =" prefix, sqrt/frac braces, spaces, a/b."""
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", "")
    return _slash_to_frac(_brace_fracs(s))


def _drop_unit_words(s: str) -> str:
    """Two sequential passes over the unit patterns; a removal that would leave "" is skipped."""
    for _ in range(2):
        if not _ANY_UNIT.search(s):
            break
        for pattern in _UNIT_PATTERNS:
            removed = pattern.sub(r"\1\2", s)
            if removed:
                s = removed
    return s


def _words_to_number(s: str) -> str:
    """English number words to digits, as the word2number package does; s unchanged when it fails.

    Like word2number: "-" is a space, case is ignored, a digit string loses leading zeros, words that
    are not number words are ignored ("no one" is 1), and malformed sequences leave s as it was.
    """
    text = s.replace("-", " ").lower()
    if text.isdigit():
        try:
            return str(int(text))
        except ValueError:  # digits int() cannot read, e.g. superscripts
            return s
    words = [w for w in text.split() if w in _NUMBER_WORDS or w == "point"]
    if not words or any(words.count(w) > 1 for w in (*_SCALES, "point")):
        return s
    decimals: list[str] = []
    if "point" in words:
        at = words.index("point")
        words, decimals = words[:at], words[at + 1 :]
    value = _integer_words(words)
    if value is None:
        return s
    if decimals and all(_NUMBER_WORDS.get(w, 10) < 10 for w in decimals):
        return str(value + float("0." + "".join(str(_NUMBER_WORDS[w]) for w in decimals)))
    return str(value)  # word2number adds an integer 0 for decimal words that are not digits


def _integer_words(words: list[str]) -> int | None:
    """word2number's integer part: billion / million / thousand segments, each read by `_segment`."""
    if len(words) <= 1:
        return _NUMBER_WORDS[words[0]] if words else 0
    at = {scale: words.index(scale) if scale in words else -1 for scale in _SCALES}
    if (at["thousand"] > -1 and (at["thousand"] < at["million"] or at["thousand"] < at["billion"])) or (
        -1 < at["million"] < at["billion"]
    ):
        return None
    total, start = 0, 0
    for scale in _SCALES:
        if at[scale] > -1:
            value = _segment(words[start : at[scale]])
            if value is None:
                return None
            total += value * _NUMBER_WORDS[scale]
            start = at[scale] + 1
    # the words after the smallest scale that is not the last word (word2number's rule, which reads
    # "two million three thousand" as 2,003,000 + 1,003); no scale at all: every word
    last = len(words) - 1
    rest = next((words[at[k] + 1 :] for k in reversed(_SCALES) if -1 < at[k] != last), None)
    if rest is None:
        rest = words if all(v == -1 for v in at.values()) else []
    return total + (_segment(rest) or 0)


def _segment(words: list[str]) -> int | None:
    """word2number's `number_formation`: reads at most four words; None for an empty segment."""
    nums = [_NUMBER_WORDS[w] for w in words]
    if not nums:
        return None
    if len(nums) == 4:
        return nums[0] * nums[1] + nums[2] + nums[3]
    if len(nums) == 3:
        return nums[0] * nums[1] + nums[2]
    if len(nums) == 2:
        return nums[0] * nums[1] if 100 in nums else nums[0] + nums[1]
    return nums[0]


def _brace_fracs(s: str) -> str:
    """`\\frac12` → `\\frac{1}{2}`, `\\frac1{72}` → `\\frac{1}{72}`; s unchanged when a \\frac has < 2 chars."""
    head, *pieces = s.split("\\frac")
    out = [head]
    for piece in pieces:
        out.append("\\frac")
        if piece.startswith("{"):
            out.append(piece)
            continue
        if len(piece) < 2:
            return s
        first, second, tail = piece[0], piece[1], piece[2:]
        out.append("{" + first + "}" + (second if second == "{" else "{" + second + "}") + tail)
    return "".join(out)


def _slash_to_frac(s: str) -> str:
    """ "3/4" → `\\frac{3}{4}` when both sides are plain integers (or contain "sqrt")."""
    sides = s.split("/")
    if len(sides) != 2:
        return s
    try:
        top, bottom = (side if "sqrt" in side else int(side) for side in sides)
    except ValueError:
        return s
    if s != f"{top}/{bottom}":
        return s
    return "\\frac{" + str(top) + "}{" + str(bottom) + "}"
