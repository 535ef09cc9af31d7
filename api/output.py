"""Writing result records (db.results.job_result's shape) as JSONL, CSV or Parquet.
JSONL keeps the nesting; CSV and Parquet get one flat row per problem: cost fields as
cost_* columns, and candidates, budget curve and meta as JSON strings."""

import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from db.models import JobCostBase

COST_FIELDS = list(JobCostBase.model_fields)
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


def _write_parquet(records: Iterable[dict[str, Any]], path: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OutputError("writing Parquet needs pyarrow (pip install pyarrow)") from None
    rows = [flatten(r) for r in records]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)


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
