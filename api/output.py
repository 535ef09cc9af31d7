"""Writing result records (db.results.batch_results' shape) as JSONL, CSV or Parquet,
as a stream: memory holds a row group at most, whatever the batch size.
JSONL keeps the nesting; CSV and Parquet get one flat row per problem: cost fields as
cost_* columns, and candidates, budget curve and meta as JSON strings."""

import csv
import json
import sys
from collections.abc import Iterable
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import IO, Any

from ttcq.db.models import JobCostBase

COST_FIELDS = list(JobCostBase.model_fields)
# Parquet types of the flat columns that are not text: declared, not inferred (below).
_COST_TYPES = {int: "int64", float: "float64", bool: "bool"}
COLUMN_TYPES = {"line": "int64", "attempts": "int64", "n": "int64", "correct": "bool"} | {
    f"cost_{name}": _COST_TYPES[field.annotation]
    for name, field in JobCostBase.model_fields.items() if field.annotation in _COST_TYPES}
PARQUET_ROWS_PER_GROUP = 2_000
NESTED = ("candidates", "budget_curve", "meta")
SUFFIXES = (".jsonl", ".csv", ".parquet")


class OutputError(ValueError):
    pass


def check_output_path(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise OutputError(f"cannot write {path.name}: use one of {', '.join(SUFFIXES)}")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One flat row: scalars as they are, cost as columns, nested lists as JSON text."""
    row = {k: v for k, v in record.items() if k != "cost" and k not in NESTED}
    cost = record.get("cost") or {}
    row.update({f"cost_{name}": cost.get(name) for name in COST_FIELDS})
    for key in NESTED:
        if key in record:
            row[key] = json.dumps(record[key], ensure_ascii=False)
    return row


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for count, record in enumerate(records, start=1):  # noqa: B007 (count survives the loop)
        out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return count


def _write_csv(records: Iterable[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer: csv.DictWriter[str] | None = None
        for count, record in enumerate(records, start=1):  # noqa: B007
            row = flatten(record)
            if writer is None:  # every record has the same shape: the first names the columns
                writer = csv.DictWriter(out, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
    return count


def _arrow_type(column: str) -> Any:
    """The Parquet type of a flat column: declared up front, so that every row group has
    the same schema (one inferred from a group of nulls would not)."""
    import pyarrow as pa

    return pa.type_for_alias(COLUMN_TYPES.get(column, "string"))


def _write_parquet(records: Iterable[dict[str, Any]], path: Path) -> int:
    """Row group by row group: memory holds PARQUET_ROWS_PER_GROUP rows, not the file."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError("writing Parquet needs pyarrow (pip install pyarrow)") from None
    rows = (flatten(record) for record in records)
    count, writer = 0, None
    try:
        while chunk := list(islice(rows, PARQUET_ROWS_PER_GROUP)):
            if writer is None:
                schema = pa.schema([(name, _arrow_type(name)) for name in chunk[0]])
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(pa.Table.from_pylist(chunk, schema=writer.schema))
            count += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({}), path)
    return count


def write_lines(lines: Iterable[str], path: Path | None) -> int:
    """JSON lines written as they are (the API's answer, not parsed and re-encoded)."""
    count = 0
    with nullcontext(sys.stdout) if path is None else path.open("w", encoding="utf-8") as out:
        for count, line in enumerate(lines, start=1):  # noqa: B007 (count survives the loop)
            out.write(line + "\n")
    return count


def write_results(records: Iterable[dict[str, Any]], path: Path | None) -> int:
    """Write records to path by its suffix, or as JSONL to stdout; returns how many."""
    if path is None:
        return write_jsonl(records, sys.stdout)
    check_output_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _write_csv(records, path)
    if suffix == ".parquet":
        return _write_parquet(records, path)
    with path.open("w", encoding="utf-8") as out:
        return write_jsonl(records, out)
