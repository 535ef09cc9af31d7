"""Final-answer extraction from solution text, canonical forms for voting, and grading."""

import logging
import re
import threading
from dataclasses import dataclass
from functools import lru_cache

import sympy
from math_verify import parse, verify

# Explicit final-answer phrases, tried after \boxed{}; never an arbitrary last number,
# which small models copy from the problem text.
_PHRASES = [
    ("final_answer_phrase", re.compile(r"final answer is[:\s]*(.+)", re.IGNORECASE)),
    ("answer_phrase", re.compile(r"\bthe answer is[:\s]*(.+)", re.IGNORECASE)),
    ("gsm8k_marker", re.compile(r"^####\s*(.+)$", re.MULTILINE)),
]
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NUMBER_THEN_WORDS = re.compile(r"^([-+]?\$?\s*\d[\d,]*(?:\.\d+)?)\s*%?\s+[A-Za-z]")
# Power towers and huge exponents: math-verify would try to evaluate them for ever.
_HUGE_POWER = re.compile(r"(\^|\*\*)\s*\{?[^{}]*(\^|\*\*)|(\^|\*\*)\s*\{?\s*\d{4,}")
# With math-verify's signal timeouts off, long inputs are what could hang the parser.
MAX_ANSWER_CHARS = 300
TIMEOUT_SECONDS = 5
# It warns once that timeouts are off; that is deliberate here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    method: str | None  # "boxed", one of the phrase names above, or None


def last_boxed(text: str) -> str | None:
    """Contents of the last complete \\boxed{...} (or \\fbox{...}), braces balanced."""
    end = len(text)
    while (start := max(text.rfind("\\boxed{", 0, end), text.rfind("\\fbox{", 0, end))) >= 0:
        contents = _braced(text, text.index("{", start) + 1)
        if contents is not None:
            return contents
        end = start  # unclosed (the model was cut off inside it): look further back
    return None


def closing_box(text: str) -> str | None:
    """Contents of a box opened before text (a prompt ending in \\boxed{): text up to the
    brace that closes it, or None if it never closes."""
    return _braced(text, 0)


def _braced(text: str, begin: int) -> str | None:
    """Text from begin up to the brace that closes the one before it, or None."""
    depth = 1
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip()
    return None


def _clean_phrase_answer(raw: str) -> str:
    answer = raw.strip().splitlines()[0] if raw.strip() else ""
    answer = answer.strip().rstrip(".").strip()
    boxed = last_boxed(answer)
    answer = (boxed if boxed is not None else answer).strip("$ ").strip()
    # "72 clips", "$18 dollars": the number is the answer, the words are units.
    number = _NUMBER_THEN_WORDS.match(answer)
    return number.group(1) if number else answer


def extract_answer(text: str) -> Extraction:
    boxed = last_boxed(text)
    if boxed:
        return Extraction(boxed, "boxed")
    for method, pattern in _PHRASES:
        matches = pattern.findall(text)
        if matches:
            answer = _clean_phrase_answer(matches[-1])
            if answer:
                return Extraction(answer, method)
    return Extraction(None, None)


def has_boxed_answer(text: str) -> bool:
    return last_boxed(text) is not None


@lru_cache(maxsize=4096)
def _parsed(answer: str) -> tuple[object, ...]:
    if len(answer) > MAX_ANSWER_CHARS or _HUGE_POWER.search(answer):
        return ()
    text = _THOUSANDS.sub("", answer.strip())
    if not text.startswith("$") and "\\boxed" not in text:
        text = f"${text}$"
    return tuple(parse(text, parsing_timeout=_timeout()))


def _timeout() -> int | None:
    """math-verify's timeouts use signals, which work only on the main thread."""
    return TIMEOUT_SECONDS if threading.current_thread() is threading.main_thread() else None


def canonical_answer(answer: str | None) -> str | None:
    """A normal form under which equal answers ("18", "18.0", "$18") compare equal."""
    if answer is None:
        return None
    parsed = _parsed(answer)
    if not parsed:
        return " ".join(answer.split())
    value = parsed[0]
    if isinstance(value, sympy.Eq):  # "x = 3" votes with "3"
        value = value.rhs
    if isinstance(value, sympy.Expr) and value.is_number and not isinstance(value, sympy.Float):
        value = sympy.simplify(value.doit())  # "10%" votes with "1/10", "sqrt(8)" with "2*sqrt(2)"
    if isinstance(value, sympy.Float) and value == int(value):
        return str(int(value))
    if isinstance(value, sympy.Float):
        return str(sympy.nsimplify(value, rational=True))
    return str(value)


def is_correct(gold: str | None, answer: str | None) -> bool | None:
    """Whether answer matches gold; None when there is no gold to grade against."""
    if gold is None:
        return None
    if answer is None:
        return False
    return bool(verify(list(_parsed(gold)), list(_parsed(answer)), timeout_seconds=_timeout()))
