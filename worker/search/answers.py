"""Final-answer extraction from solution text, canonical forms for voting, and grading."""

import logging
import re
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
# With math-verify's signal timeouts off, long inputs are what could hang the parser.
MAX_ANSWER_CHARS = 300
# It warns once that timeouts are off; that is deliberate here.
logging.getLogger("math_verify").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    method: str | None  # "boxed", one of the phrase names above, or None


def last_boxed(text: str) -> str | None:
    """Contents of the last complete \\boxed{...} (or \\fbox{...}), braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip()
        i += 1
    return None  # unclosed: the model was cut off inside the box


def _clean_phrase_answer(raw: str) -> str:
    answer = raw.strip().splitlines()[0] if raw.strip() else ""
    answer = answer.strip().rstrip(".").strip()
    boxed = last_boxed(answer)
    return (boxed if boxed is not None else answer).strip("$ ").strip()


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


def gsm8k_gold(solution: str) -> str:
    """The gold answer of a GSM8K solution: the text after its '#### ' line."""
    marker = solution.rfind("####")
    if marker < 0:
        raise ValueError("GSM8K answer has no '#### ' line")
    return solution[marker + 4 :].strip()


@lru_cache(maxsize=4096)
def _parsed(answer: str) -> tuple[object, ...]:
    if len(answer) > MAX_ANSWER_CHARS:
        return ()
    text = _THOUSANDS.sub("", answer.strip())
    if not text.startswith("$") and "\\boxed" not in text:
        text = f"${text}$"
    # Timeouts off: math-verify's timeouts use signals, which only work on the main thread.
    return tuple(parse(text, parsing_timeout=None))


def canonical_answer(answer: str | None) -> str | None:
    """A normal form under which equal answers ("18", "18.0", "$18") compare equal."""
    if answer is None:
        return None
    parsed = _parsed(answer)
    if not parsed:
        return " ".join(answer.split())
    value = parsed[0]
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
    return bool(verify(list(_parsed(gold)), list(_parsed(answer)), timeout_seconds=None))
