"""Dataset files (JSONL, CSV, Parquet) into ProblemIn rows, every row checked before anything
is stored. MATH-500 (`problem`, `answer`) and GSM8K (`question`, answer after `#### `) load as
they are; other layouts map their columns with fields={"problem": column, ...}.

`line` is the line of the file for JSONL and CSV (what an editor shows) and the 1-based row
for Parquet and for problems sent as a JSON list."""

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

from db.batches import ProblemIn

MAX_REPORTED_ERRORS = 20
MAX_CUSTOM_ID_CHARS = 256  # the width of job.custom_id
MAPPABLE_FIELDS = ("problem", "gold", "custom_id")
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
UTF8_BOM = b"\xef\xbb\xbf"

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


class _Errors:
    """Collects errors while parsing goes on, so one upload reports many at once."""

    def __init__(self) -> None:
        self.items: list[LineError] = []
        self.count = 0

    def add(self, line: int | None, field: str | None, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_REPORTED_ERRORS:
            self.items.append(LineError(line, field, message))

    def raise_if_any(self) -> None:
        if self.count:
            raise DatasetError(self.items, self.count)


class _BadField(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def parse_fields(pairs: Iterable[str]) -> dict[str, str]:
    """`problem=col` pairs (the CLI's --field) as a mapping of our field to a column."""
    mapping = {}
    for pair in pairs:
        target, sep, column = pair.partition("=")
        if not sep or not column or target not in MAPPABLE_FIELDS:
            raise ValueError(
                f"field mapping {pair!r} is not FIELD=COLUMN with FIELD one of "
                + ", ".join(MAPPABLE_FIELDS)
            )
        mapping[target] = column
    return mapping


def detect_format(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(FORMATS)
        raise DatasetError([LineError(None, None, f"unknown file type {suffix!r}; use {known}")])
    return FORMATS[suffix]


def load_dataset(
    data: bytes, *, fmt: str, limits: Limits, fields: Mapping[str, str] | None = None
) -> list[ProblemIn]:
    """Parse a whole file, or raise DatasetError naming each bad line and field."""
    errors = _Errors()
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}
    if fmt not in readers:
        raise DatasetError([LineError(None, None, f"unknown format {fmt!r}")])
    return to_problems(readers[fmt](data, errors), limits=limits, fields=fields, errors=errors)


def _read_jsonl(data: bytes, errors: _Errors) -> Iterator[Record]:
    for number, raw in enumerate(data.removeprefix(UTF8_BOM).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            errors.add(number, None, f"not UTF-8 text (bad byte at column {error.start + 1})")
            continue
        except json.JSONDecodeError as error:
            errors.add(number, None, f"malformed JSON: {error.msg} at column {error.colno}")
            continue
        if not isinstance(value, dict):
            errors.add(number, None, f"expected a JSON object, got {_kind(value)}")
            continue
        yield number, value


def _read_csv(data: bytes, errors: _Errors) -> Iterator[Record]:
    try:
        text = data.removeprefix(UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        errors.add(line, None, "not UTF-8 text")
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if None in row:  # DictReader files surplus cells under the key None
                errors.add(reader.line_num, None, "more cells than header columns")
                continue
            yield reader.line_num, dict(row)
    except csv.Error as error:
        errors.add(reader.line_num, None, f"malformed CSV: {error}")


def _read_parquet(data: bytes, errors: _Errors) -> Iterator[Record]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        errors.add(None, None, "reading Parquet needs pyarrow (pip install pyarrow)")
        return
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as error:
        errors.add(None, None, f"not a readable Parquet file: {error}")
        return
    yield from enumerate(table.to_pylist(), start=1)


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
    errors: _Errors | None = None,
) -> list[ProblemIn]:
    """Check and convert raw records; raises DatasetError if any record (or the whole) is bad."""
    errors = errors or _Errors()
    problems: list[ProblemIn] = []
    first_line_of: dict[str, int] = {}
    layout: _Layout | None = None
    for seen, (line, record) in enumerate(records, start=1):
        if seen > limits.max_problems:
            errors.add(line, None, f"more than {limits.max_problems} problems in one batch")
            break
        layout = layout or _Layout.detect(record, fields or {})
        try:
            problem = _problem(line, record, layout, limits)
            _check_unique(problem, layout.custom_id, first_line_of)
        except _BadField as bad:
            errors.add(line, bad.field, bad.message)
            continue
        problems.append(problem)
    if not problems and not errors.count:
        errors.add(None, None, "the dataset is empty: no problems found")
    errors.raise_if_any()
    return problems


def _problem(line: int, record: Mapping[str, Any], layout: _Layout, limits: Limits) -> ProblemIn:
    text = _text(record, layout.problem, numbers=False)
    if text is None or not text.strip():
        hint = "" if layout.problem in record else " (map a column with --field problem=COLUMN)"
        raise _BadField(layout.problem, f"missing or empty{hint}")
    if len(text) > limits.max_problem_chars:
        raise _BadField(
            layout.problem,
            f"{len(text)} characters, over the limit of {limits.max_problem_chars}",
        )
    custom_id = _text(record, layout.custom_id, numbers=True)
    if custom_id is not None and len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise _BadField(layout.custom_id, f"longer than {MAX_CUSTOM_ID_CHARS} characters")
    meta = {k: _jsonable(v) for k, v in record.items() if k not in layout.used()}
    return ProblemIn(line=line, problem=text, gold=_gold(record, layout),
                     custom_id=custom_id or None, meta=meta)


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
    if isinstance(value, str) and "\x00" in value:
        raise _BadField(column, "contains a NUL character, which text cannot hold")
    if value is None or isinstance(value, str):
        return value
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    wanted = "a string or number" if numbers else "a string"
    raise _BadField(column, f"expected {wanted}, got {_kind(value)}")


def _check_unique(problem: ProblemIn, column: str, first_line_of: dict[str, int]) -> None:
    if problem.custom_id is None:
        return
    first = first_line_of.setdefault(problem.custom_id, problem.line)
    if first != problem.line:
        raise _BadField(column, f"duplicate {problem.custom_id!r}, first on line {first}")


def _jsonable(value: Any) -> Any:
    """Parquet cells can be dates or bytes; meta is stored as JSON."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
