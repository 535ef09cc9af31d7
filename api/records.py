"""Dataset records (one dict per line or row) checked and turned into ProblemIn, with an
error naming the line and field for everything Postgres could not store or send back:
NUL characters, unpaired surrogates, nesting deeper than MAX_NESTING, numbers JSON has no
words for. Problems stream through: nothing waits for the whole file, and after the first
bad record none is passed on (the batch will be refused) while every record is still
checked, so one answer names every bad line."""

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ttcq.db.batches import ProblemIn

MAX_REPORTED_ERRORS = 20
MAX_CUSTOM_ID_CHARS = 256  # the width of job.custom_id
MAX_NESTING = 64  # levels of arrays and objects in a record; no dataset needs more
MAX_FIELD_NAME_CHARS = 100  # of a column name quoted back in an error

Record = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class LineError:
    line: int | None
    field: str | None
    message: str


class DatasetError(ValueError):
    """Everything wrong with a dataset (the first MAX_REPORTED_ERRORS of it)."""

    def __init__(self, errors: list[LineError], total: int | None = None):
        self.errors = errors[:MAX_REPORTED_ERRORS]
        self.total = total if total is not None else len(errors)
        super().__init__(self.summary())

    def summary(self) -> str:
        if self.total == 1:
            return "the dataset has 1 error"
        shown = "" if self.total == len(self.errors) else f" (first {len(self.errors)} shown)"
        return f"the dataset has {self.total} errors{shown}"

    def detail(self) -> dict[str, Any]:
        return {"message": self.summary(), "errors": [asdict(e) for e in self.errors]}


@dataclass(frozen=True)
class Limits:
    max_problem_chars: int
    max_problems: int
    gold_required: bool = False  # a label batch grades its rollouts against the gold


class ErrorLog:
    """Collects errors while parsing goes on, so one upload reports many at once."""

    def __init__(self) -> None:
        self.items: list[LineError] = []
        self.count = 0

    def add(self, line: int | None, field: str | None, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED_ERRORS:
            self.items.append(LineError(line, None if field is None else field_label(field),
                                        message))

    def raise_if_any(self) -> None:
        if self.count:
            raise DatasetError(self.items, self.count)


class BadField(Exception):
    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def field_label(name: str) -> str:
    """A column name as an error quotes it: short, and text whatever bytes it held."""
    short = name if len(name) <= MAX_FIELD_NAME_CHARS else name[:MAX_FIELD_NAME_CHARS] + "…"
    return short.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class _Layout:
    """Which column holds each of our fields; decided once per file, from its first row."""

    problem: str
    gold: str | None
    custom_id: str

    @classmethod
    def detect(cls, record: Mapping[str, Any], fields: Mapping[str, str]) -> "_Layout":
        problem = fields.get("problem") or _first_present(record, ("problem", "question"))
        gold = fields.get("gold") or _first_present(record, ("answer", "gold"))
        return cls(problem or "problem", gold, fields.get("custom_id", "custom_id"))

    def used(self) -> set[str]:
        return {self.problem, self.custom_id} | ({self.gold} if self.gold else set())


def _first_present(record: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in record), None)


def to_problems(
    records: Iterable[Record],
    *,
    limits: Limits,
    fields: Mapping[str, str] | None = None,
    errors: ErrorLog | None = None,
) -> Iterator[ProblemIn]:
    """Check and convert raw records as they come; raises DatasetError at the end if any
    record (or the whole) was bad. Nothing is yielded after the first error."""
    errors = errors or ErrorLog()
    first_line_of: dict[str, int] = {}
    layout: _Layout | None = None
    seen = 0
    for seen, (line, record) in enumerate(records, start=1):  # noqa: B007 (seen survives)
        if seen > limits.max_problems:
            errors.add(line, None, f"more than {limits.max_problems} problems in one batch")
            break
        layout = layout or _Layout.detect(record, fields or {})
        try:
            problem = _problem(line, record, layout, limits)
            _check_unique(problem, layout.custom_id, first_line_of)
        except BadField as bad:
            errors.add(line, bad.field, bad.message)
            continue
        if not errors.count:
            yield problem
    if not seen and not errors.count:
        errors.add(None, None, "the dataset is empty: no problems found")
    errors.raise_if_any()


def _problem(line: int, record: Mapping[str, Any], layout: _Layout, limits: Limits) -> ProblemIn:
    text = _text(record, layout.problem, numbers=False)
    if text is None or not text.strip():
        hint = "" if layout.problem in record else " (map a column with --field problem=COLUMN)"
        raise BadField(layout.problem, f"missing or empty{hint}")
    if len(text) > limits.max_problem_chars:
        raise BadField(
            layout.problem,
            f"{len(text)} characters, over the limit of {limits.max_problem_chars}",
        )
    custom_id = _text(record, layout.custom_id, numbers=True)
    if custom_id is not None and len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise BadField(layout.custom_id, f"longer than {MAX_CUSTOM_ID_CHARS} characters")
    used = layout.used()
    meta = {check_text(k, k): clean_value(v, k) for k, v in record.items() if k not in used}
    gold = _gold(record, layout)
    if gold is None and limits.gold_required:
        raise BadField(layout.gold or "answer",
                       "missing: step labels grade their rollouts against the gold answer")
    return ProblemIn(line=line, problem=text, gold=gold, custom_id=custom_id or None,
                     meta=meta)


def _gold(record: Mapping[str, Any], layout: _Layout) -> str | None:
    if layout.gold is None:
        return None
    gold = _text(record, layout.gold, numbers=True)
    if not gold or not gold.strip():
        return None
    # GSM8K's answer is a worked solution whose final line is '#### <answer>'.
    return gsm8k_gold(gold) if "####" in gold else gold.strip()


def gsm8k_gold(solution: str) -> str:
    """The gold answer of a GSM8K solution: the text after its '#### ' line."""
    marker = solution.rfind("####")
    if marker < 0:
        raise ValueError("GSM8K answer has no '#### ' line")
    return solution[marker + 4 :].strip()


def _text(record: Mapping[str, Any], column: str, *, numbers: bool) -> str | None:
    value = record.get(column)
    if isinstance(value, str):
        return check_text(value, column)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None  # a missing cell, or Parquet's NaN for one
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    wanted = "a string or number" if numbers else "a string"
    raise BadField(column, f"expected {wanted}, got {kind(value)}")


def check_text(value: str, field: str) -> str:
    """value, if Postgres can store it as text; else BadField naming field."""
    if "\x00" in value:
        raise BadField(field, "contains a NUL character, which text cannot hold")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadField(field, "contains an unpaired UTF-16 surrogate (\\ud800-\\udfff), "
                                  "which is not text") from None
    return value


def clean_value(value: Any, field: str, depth: int = 2) -> Any:
    """A value of an extra column as meta stores it (JSON): checked like text, NaN and
    infinities as null (JSON has no such numbers), Parquet's dates and bytes as strings.
    depth is the value's level in its line (the record itself is level 1)."""
    if isinstance(value, str):
        return check_text(value, field)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > MAX_NESTING and isinstance(value, list | tuple | dict):
        raise BadField(field, f"nested deeper than {MAX_NESTING} levels")
    if isinstance(value, list | tuple):
        return [clean_value(item, field, depth + 1) for item in value]
    if isinstance(value, dict):
        return {check_text(str(k), field): clean_value(v, field, depth + 1)
                for k, v in value.items()}
    return str(value)


def _check_unique(problem: ProblemIn, column: str, first_line_of: dict[str, int]) -> None:
    if problem.custom_id is None:
        return
    first = first_line_of.setdefault(problem.custom_id, problem.line)
    if first != problem.line:
        raise BadField(column, f"duplicate {problem.custom_id!r}, first on line {first}")


def kind(value: Any) -> str:
    """How an error names a JSON value's type."""
    return {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
