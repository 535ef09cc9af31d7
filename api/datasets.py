"""Dataset files (JSONL, CSV, Parquet) into ProblemIn rows, read as a stream: a line (or a
Parquet row group) at a time, so memory follows the largest line, not the file. MATH-500
(`problem`, `answer`) and GSM8K (`question`, answer after `#### `) load as they are; other
layouts map their columns with fields={"problem": column, ...}. Checking is api.records'.

`line` is the line of the file for JSONL and CSV (what an editor shows) and the 1-based row
for Parquet and for problems sent as a JSON list."""

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import PurePath
from typing import IO, Any

from ttcq.api.records import (
    MAX_NESTING,
    MAX_REPORTED_ERRORS,
    DatasetError,
    ErrorLog,
    Limits,
    LineError,
    Record,
    gsm8k_gold,
    kind,
    to_problems,
)
from ttcq.db.batches import ProblemIn

__all__ = ["MAX_REPORTED_ERRORS", "DatasetError", "Limits", "LineError", "gsm8k_gold",
           "detect_format", "load_dataset", "parse_fields", "read_dataset",
           "decode_json", "json_record"]

MAPPABLE_FIELDS = ("problem", "gold", "custom_id")
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
UTF8_BOM = b"\xef\xbb\xbf"
PARQUET_ROWS_PER_READ = 10_000
CSV_MAX_CELL_CHARS = 64 * 2**20
# A JSON string or bracket: enough to follow nesting without building anything.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


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


def read_dataset(
    stream: IO[bytes], *, fmt: str, limits: Limits, fields: Mapping[str, str] | None = None
) -> Iterator[ProblemIn]:
    """The file's problems as they are read; raises DatasetError, after reading it all,
    naming each bad line and field (nothing is yielded after the first)."""
    errors = ErrorLog()
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}
    if fmt not in readers:
        raise DatasetError([LineError(None, None, f"unknown format {fmt!r}")])
    return to_problems(readers[fmt](stream, errors), limits=limits, fields=fields, errors=errors)


def load_dataset(
    data: bytes, *, fmt: str, limits: Limits, fields: Mapping[str, str] | None = None
) -> list[ProblemIn]:
    """A whole file in memory, parsed (see read_dataset)."""
    return list(read_dataset(io.BytesIO(data), fmt=fmt, limits=limits, fields=fields))


def decode_json(text: str) -> Any:
    """json.loads, with the JSON that Python accepts and Postgres does not refused
    (NaN, Infinity) and nesting past MAX_NESTING as ValueError."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_NESTING} levels") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_jsonl(stream: IO[bytes], errors: ErrorLog) -> Iterator[Record]:
    for number, raw in enumerate(stream, start=1):
        line = raw.removeprefix(UTF8_BOM) if number == 1 else raw
        if not line.strip():
            continue
        value = _json_line(number, line, errors)
        if value is not None:
            yield number, value


def _json_line(number: int, raw: bytes, errors: ErrorLog) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        errors.add(number, None, f"not UTF-8 text (bad byte at column {error.start + 1})")
        return None
    return json_record(number, text, errors)


def json_record(number: int, text: str, errors: ErrorLog) -> dict[str, Any] | None:
    """The JSON object of one line (or list element), or None with its error logged."""
    try:
        value = decode_json(text)
    except json.JSONDecodeError as error:
        errors.add(number, None, f"malformed JSON: {error.msg} at column {error.colno}")
        return None
    except ValueError as error:  # too deep, NaN, a number of more than 4,300 digits
        errors.add(number, deepest_key(text), f"malformed JSON: {error}")
        return None
    if not isinstance(value, dict):
        errors.add(number, None, f"expected a JSON object, got {kind(value)}")
        return None
    return value


def deepest_key(text: str) -> str | None:
    """The top-level key under which a JSON object nests past MAX_NESTING, if it does."""
    depth, last_string, key = 0, None, None
    for token in _JSON_TOKEN.finditer(text):
        mark = token.group()
        if mark.startswith('"'):
            last_string = mark if depth == 1 else last_string
        elif mark in "[{":
            depth += 1
            key = last_string if depth == 2 else key
            if depth > MAX_NESTING:
                return _unquote(key)
        else:
            depth -= 1
    return None


def _unquote(token: str | None) -> str | None:
    try:
        return json.loads(token) if token else None
    except ValueError:
        return None


def _decoded_lines(stream: IO[bytes], errors: ErrorLog) -> Iterator[str]:
    """Text lines of a CSV file; a line that is not UTF-8 is an error, kept (with
    replacement characters) so that the reader's line numbers stay right."""
    for number, raw in enumerate(stream, start=1):
        line = raw.removeprefix(UTF8_BOM) if number == 1 else raw
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            errors.add(number, None, "not UTF-8 text")
            yield line.decode("utf-8", "replace")


def _read_csv(stream: IO[bytes], errors: ErrorLog) -> Iterator[Record]:
    # The csv module's default refuses cells over 128 KiB, which an extra column may hold.
    csv.field_size_limit(max(csv.field_size_limit(), CSV_MAX_CELL_CHARS))
    reader = csv.DictReader(_decoded_lines(stream, errors))
    try:
        for row in reader:
            if None in row:  # DictReader files surplus cells under the key None
                errors.add(reader.line_num, None, "more cells than header columns")
                continue
            yield reader.line_num, dict(row)
    except csv.Error as error:
        errors.add(reader.line_num, None, f"malformed CSV: {error}")


def _read_parquet(stream: IO[bytes], errors: ErrorLog) -> Iterator[Record]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        errors.add(None, None, "reading Parquet needs pyarrow (pip install pyarrow)")
        return
    rows = 0
    try:
        for batch in pq.ParquetFile(stream).iter_batches(batch_size=PARQUET_ROWS_PER_READ):
            for record in batch.to_pylist():
                rows += 1
                yield rows, record
    except (pa.ArrowException, OSError) as error:
        errors.add(rows + 1 if rows else None, None, f"not a readable Parquet file: {error}")
