"""A programmatic step verifier: arithmetic and one-variable algebra re-checked exactly.

Model text is never evaluated: it is cut down to a whitelist of characters, rebuilt as
plain arithmetic, parsed with ast.parse (parsing only) and turned into sympy objects node
by node, with bounds on size and exponents. What does not fit is not checkable."""

import ast
import operator
import re
import time
from collections.abc import Callable, Sequence
from functools import lru_cache

import sympy

from ttcq.worker.engines.base import Usage
from ttcq.worker.verifiers.base import VerifierOutput

NEUTRAL = 0.5
MAX_TOKENS = 80  # per side; longer runs are prose with numbers, not a calculation
MAX_DIGITS = 30
MAX_POWER_BITS = 20_000  # bits of |base| times the exponent: 9^9^9^9 is refused
# Symbolic powers and equation degrees kept small: equations are compared by solving.
MAX_SYMBOLIC_EXPONENT, MAX_DEGREE = 4, 3
MAX_STEP_CHARS, MAX_CLAIMS = 4000, 64

_ANNOTATION = re.compile(r"<<([^<>]{1,200})>>")
_SYMBOLS = str.maketrans({"×": "*", "·": "*", "∗": "*", "÷": "/", "∕": "/", "−": "-",
                          "–": "-", "²": "^2", "³": "^3", "{": "(", "}": ")", "$": " "})
_REWRITES = [  # applied after _SYMBOLS, so LaTeX braces are parentheses here
    (r"\\[dt]?frac\(([^()]*)\)\(([^()]*)\)", r"((\1)/(\2))"),
    (r"\\(?:times|cdot|ast)", "*"),
    (r"\\div", "/"),
    (r"\\(?:text|mathrm|textbf)\([^()]*\)", " "),
    (r"\\(?:left|right|boxed|[,;!()\[\]])", " "),
    (r"(?<=\d),(?=\d{3}\b)", ""),  # thousands separators
    (r"\*\*", "^"),
    (r"(?<=\d)[xX](?=\d)", "*"),  # 16x3
    (r"(?<=[\w)])\s+(?:[xX]|times|multiplied by)\s+(?=[\d(])", " * "),  # 16 x 3, eggs x 2
    (r"(?<=\d)\s+divided by\s+(?=\d)", " / "),
    (r"%\s*of\s+(?=\d)", "% * "),  # 20% of 50
    (r"(?<![\d.])\.(?=\d)", "0."),  # .5
    # Unit words between a number and an operator: "9 eggs * 2" is 9 * 2 ...
    (r"(?<=\d)\s+(?:[A-Za-z]{2,}\s+){1,3}(?=[-+*/^]\s*[\d(])", " "),
    # ... and before the '=' that ends an operation: "- 4 eggs = 9", not "9 eggs = $18".
    (r"([-+*/^]\s*\d+(?:\.\d+)?)\s+(?:[A-Za-z]{2,}\s+){1,3}(?==)", r"\1 "),
    (r"(?m)^\s*(?:[-*•]|\d+[.)])\s+", " "),  # list bullets and numbers
    (r"(?<![\d./])(\d+) +([1-9]\d*)/(\d+)(?![\d./])", r"(\1+\2/\3)"),  # mixed: 1 1/2
]
_REWRITES_RE = [(re.compile(pattern), repl) for pattern, repl in _REWRITES]
# Words end a claim (single letters may be variables), as do full stops and the rest.
_SEPARATOR = re.compile(r"([A-Za-z]{2,}|(?<!\d)\.|\.(?!\d)|[^0-9.+\-*/^()%=A-Za-z ])")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[A-Za-z]|[-+*/^()%=]")
_DECIMAL = re.compile(r"-?\d+\.(\d+)")

Equation = tuple[sympy.Symbol, sympy.Expr]  # expr = 0 in its one free symbol
Fact = bool | Equation


def normalise(text: str) -> str:
    text = text.translate(_SYMBOLS)
    for pattern, repl in _REWRITES_RE:
        text = pattern.sub(repl, text)
    return text


def claims(text: str) -> list[tuple[str, bool]]:
    """(claim, follows a word) for each run of whitelisted characters holding an '=';
    GSM8K calculator annotations <<16-3-4=9>> are claims of their own."""
    found = [(normalise(m.group(1)), False) for m in _ANNOTATION.finditer(text)]
    parts = _SEPARATOR.split(normalise(_ANNOTATION.sub(" ", text)))
    # split() with a group alternates runs and separators: parts[i - 1] precedes parts[i].
    for i in range(0, len(parts), 2):
        if "=" in parts[i]:
            found.append((parts[i], i > 0 and parts[i - 1].isalpha()))
    return found


def tokenize(text: str) -> list[str]:
    tokens = _TOKEN.findall(text)
    whole = "".join(tokens) == "".join(text.split())  # nothing off the whitelist
    if not whole or len(tokens) > MAX_TOKENS or any(len(t) > MAX_DIGITS for t in tokens):
        raise ValueError("not a short calculation")
    return tokens


def sides(claim: str, after_word: bool = False) -> list[list[str]]:
    """Token lists of the sides of a chain `a = b = c`, trimmed of words' leftovers."""
    out = [tokenize(part) for part in claim.split("=")]
    first, last = out[0], out[-1]
    # A word may have cut off the left operand: "eggs * 2 = 18" seen as "* 2", "half of
    # 12 = 6" as "12"; a lone number after a word is dropped for that reason.
    lone_number = len(first) == 1 and first[0][0].isdigit()
    if re.match(r"\s*([+*/^]|-\s)", claim) or (after_word and lone_number):
        first.clear()
    if len(first) > 1 and first[0].isalpha() and first[1][0].isdigit():
        del first[0]  # "Janet's 16 + 3": the s of a possessive
    letters = any(t.isalpha() for side in out[:-1] for t in side)
    if len(last) > 1 and last[-1].isalpha() and last[-2][0].isdigit() and not letters:
        del last[-1]  # a unit: "4 * 5 = 20 m"
    return [side for side in out if side]  # "= 16 + 4 = 20" after a word


def _source(tokens: list[str]) -> str:
    """The tokens as Python arithmetic: exact decimals, explicit implicit products."""
    parts: list[str] = []
    for prev, token in zip([""] + tokens, tokens, strict=False):
        if prev and prev not in "+-*/(^" and (token == "(" or token.isalpha()):
            parts.append("*")  # 2x, 2(x + 3), (a)(b)
        if token == "%" and prev[:1].isdigit():
            parts[-1] = f"({parts[-1]}*percent)"
        elif "." in token:
            whole, frac = token.split(".")
            parts.append(f"({int(whole + frac)}/{10 ** len(frac)})")
        else:
            parts.append({"^": "**", "%": "@"}.get(token, token))  # a stray % fails to parse
    return " ".join(parts)  # spaces keep "2 3" two numbers (a syntax error), not 23


def _divide(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    if b == 0:
        raise ValueError("division by zero")
    return a / b


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    if not (exponent.is_Integer and exponent >= 0):
        raise ValueError("only whole exponents")
    bits = 0 if base.free_symbols else abs(base.p).bit_length() + base.q.bit_length()
    if int(exponent) > (MAX_POWER_BITS // bits if bits else MAX_SYMBOLIC_EXPONENT):
        raise ValueError("power too large")
    return base ** int(exponent)


_BINARY: dict[type, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _divide,
    ast.Pow: _power,
}


def _build(node: ast.AST, percent: sympy.Rational) -> sympy.Expr:
    """A sympy value from a syntax tree of numbers, letters and + - * / ** only."""
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _build(node.left, percent), _build(node.right, percent)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _build(node.operand, percent)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return sympy.Integer(node.value)
    if isinstance(node, ast.Name) and node.id == "percent":
        return percent
    if isinstance(node, ast.Name) and len(node.id) == 1:
        return sympy.Symbol(node.id)
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def _decimals(side: list[str]) -> int:
    """Decimal places of a side written as a plain decimal number, else 0."""
    match = _DECIMAL.fullmatch("".join(side))
    return len(match.group(1)) if match else 0


def _pair(a: sympy.Expr, b: sympy.Expr, da: int, db: int) -> Fact | None:
    diff = sympy.cancel(a - b)
    if not diff.free_symbols:  # arithmetic, or an identity such as 2(x + 3) = 2x + 6
        # A written decimal may be the exact value rounded either way: 10/3 = 3.33.
        places = min((d for d in (da, db) if d), default=0)
        return bool(diff == 0) or (places > 0 and bool(abs(diff) * 10**places < 1))
    if len(diff.free_symbols) == 1:
        return (next(iter(diff.free_symbols)), diff)
    return None


def _chain_facts(chain: list[list[str]], percent: sympy.Rational) -> list[Fact]:
    values = [_build(ast.parse(_source(side), mode="eval").body, percent) for side in chain]
    pairs = zip(values, values[1:], chain, chain[1:], strict=False)
    facts = [_pair(a, b, _decimals(sa), _decimals(sb)) for a, b, sa, sb in pairs]
    return [f for f in facts if f is not None]


def claim_facts(claim: str, after_word: bool = False) -> list[Fact]:
    """Verdicts (bool) and one-variable equations stated by one claim; [] if unparseable.
    A percent sign means /100 unless reading it as decoration is what makes the claim hold."""
    try:
        chain = sides(claim, after_word)
        facts = _chain_facts(chain, sympy.Rational(1, 100))
        if "%" in claim and False in facts:
            plain = _chain_facts(chain, sympy.Integer(1))
            return facts if False in plain else plain
        return facts
    except Exception:  # noqa: BLE001 - whatever the parser or sympy raise: not checkable
        return []


def _consistent(a: Equation, b: Equation) -> bool | None:
    """Whether two equations in one variable agree: equal solution sets, or one inside
    the other (x^2 = 4 then x = 2 picks a root; x = 2 then x^2 = 4 follows)."""
    symbol = a[0]
    try:
        numerators = (sympy.numer(sympy.together(expr)) for _, expr in (a, b))
        if any(sympy.degree(n, symbol) > MAX_DEGREE for n in numerators):
            return None
        first, second = set(sympy.solve(a[1], symbol)), set(sympy.solve(b[1], symbol))
        if not (first and second):  # no solution (1/x = 0) is a subset of everything
            return first == second
        return first <= second or second <= first
    except Exception:  # noqa: BLE001 - solve fails in many ways: not checkable
        return None


def step_verdicts(text: str) -> list[bool]:
    """Every checkable claim of a step, true or false; consecutive equations in the
    same variable must agree (2x + 3 = 7, 2x = 4, x = 2)."""
    verdicts: list[bool] = []
    last_equation: dict[sympy.Symbol, Equation] = {}
    for claim, after_word in claims(text[:MAX_STEP_CHARS])[:MAX_CLAIMS]:
        for fact in claim_facts(claim, after_word):
            if isinstance(fact, bool):
                verdicts.append(fact)
                continue
            previous = last_equation.get(fact[0])
            agree = _consistent(previous, fact) if previous else None
            if agree is not None:
                verdicts.append(agree)
            last_equation[fact[0]] = fact
    return verdicts


@lru_cache(maxsize=4096)  # steps repeat across beams; bounded memory
def score_step(text: str) -> float:
    """1.0 when every checkable claim holds, 0.0 when any is false, 0.5 when none."""
    verdicts = step_verdicts(text)
    return float(all(verdicts)) if verdicts else NEUTRAL


class CheckerVerifier:
    """Uses no model: its usage counts calls (and seconds), never tokens."""

    name = "checker"

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        start = time.perf_counter()
        scores = [[score_step(s) for s in (c[-1:] if last_only else c)] for c in candidates]
        usage = Usage(calls=1 if candidates else 0, seconds=time.perf_counter() - start)
        return VerifierOutput(scores, usage)
