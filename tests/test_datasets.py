"""Dataset parsing: MATH-500 / GSM8K layouts, field mapping, formats, and every bad input."""

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttcq.api.datasets import (
    MAX_REPORTED_ERRORS,
    DatasetError,
    Limits,
    detect_format,
    gsm8k_gold,
    load_dataset,
    parse_fields,
)

LIMITS = Limits(max_problem_chars=200, max_problems=10)
SHARED_DATA = Path("/work/shared/data")


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def load(data: bytes, fmt: str = "jsonl", **fields: str):  # type: ignore[no-untyped-def]
    return load_dataset(data, fmt=fmt, limits=LIMITS, fields=fields or None)


def only_error(data: bytes, fmt: str = "jsonl") -> tuple[int | None, str | None, str]:
    with pytest.raises(DatasetError) as caught:
        load(data, fmt)
    [error] = caught.value.errors
    return error.line, error.field, error.message


def test_math500_rows_load_without_mapping() -> None:
    row = {"problem": "Compute $1+1$.", "answer": "2", "level": 1, "subject": "Algebra",
           "unique_id": "test/algebra/1.json"}
    [problem] = load(jsonl(row))
    assert (problem.line, problem.problem, problem.gold) == (1, "Compute $1+1$.", "2")
    assert problem.meta == {"level": 1, "subject": "Algebra", "unique_id": "test/algebra/1.json"}


def test_gsm8k_gold_is_the_text_after_the_marker() -> None:
    row = {"question": "Janet has 3 eggs and buys 2. How many?", "answer": "3+2=5\n#### 5"}
    [problem] = load(jsonl(row))
    assert (problem.problem, problem.gold) == ("Janet has 3 eggs and buys 2. How many?", "5")


@pytest.mark.parametrize("name", ["math500.jsonl", "gsm8k_test.jsonl"])
def test_shipped_datasets_load_whole(name: str) -> None:
    data = (SHARED_DATA / name).read_bytes()
    limits = Limits(max_problem_chars=20_000, max_problems=10_000)
    problems = load_dataset(data, fmt="jsonl", limits=limits)
    assert len(problems) == data.strip().count(b"\n") + 1
    assert all(p.gold for p in problems)


def test_field_mapping_reads_other_columns() -> None:
    data = b"id,q,a\nx1,What is 2+2?,4\n"
    [problem] = load(data, "csv", problem="q", gold="a", custom_id="id")
    assert (problem.custom_id, problem.problem, problem.gold, problem.meta) == (
        "x1", "What is 2+2?", "4", {})


def test_custom_id_round_trips_from_its_field() -> None:
    rows = load(jsonl({"problem": "a", "custom_id": "first"}, {"problem": "b", "custom_id": 7}))
    assert [p.custom_id for p in rows] == ["first", "7"]


def test_csv_lines_count_the_header() -> None:
    rows = load(b"problem,answer\nOne plus one?,2\nTwo plus two?,4\n", "csv")
    assert [(p.line, p.gold) for p in rows] == [(2, "2"), (3, "4")]


def test_parquet_rows_load_with_their_row_numbers() -> None:
    table = pa.table({"problem": ["p1", "p2"], "answer": [3, 4], "level": [1, 2]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    rows = load(sink.getvalue(), "parquet")
    assert [(p.line, p.problem, p.gold, p.meta) for p in rows] == [
        (1, "p1", "3", {"level": 1}), (2, "p2", "4", {"level": 2})]


def test_blank_lines_are_skipped_but_counted() -> None:
    rows = load(b'{"problem": "a"}\n\n{"problem": "b"}\n')
    assert [p.line for p in rows] == [1, 3]


def test_malformed_json_names_its_line() -> None:
    line, field, message = only_error(b'{"problem": "a"}\n{"problem": \n')
    assert (line, field) == (2, None) and "malformed JSON" in message


def test_missing_problem_names_line_and_field() -> None:
    line, field, message = only_error(jsonl({"problem": "a"}, {"answer": "3"}))
    assert (line, field) == (2, "problem") and "missing" in message


def test_unknown_layout_asks_for_a_mapping() -> None:
    _, field, message = only_error(jsonl({"text": "a"}))
    assert field == "problem" and "--field problem=COLUMN" in message


def test_wrong_type_names_line_and_field() -> None:
    line, field, message = only_error(jsonl({"problem": "a", "custom_id": [1]}))
    assert (line, field) == (1, "custom_id") and "got an array" in message


def test_a_nul_character_names_line_and_field() -> None:
    rows = jsonl({"problem": "a"}, {"problem": "b", "custom_id": "x\u0000y"})
    line, field, message = only_error(rows)
    assert (line, field) == (2, "custom_id") and "NUL" in message


def test_non_object_line_is_rejected() -> None:
    line, _, message = only_error(b'[1, 2]\n')
    assert line == 1 and "expected a JSON object" in message


@pytest.mark.parametrize("data", [b"", b"\n\n", b"problem,answer\n"])
def test_empty_file_is_an_error(data: bytes) -> None:
    fmt = "csv" if data.startswith(b"problem") else "jsonl"
    assert "empty" in only_error(data, fmt)[2]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_non_utf8_names_its_line(fmt: str) -> None:
    data = b'{"problem": "a"}\n{"problem": "caf\xe9"}\n' if fmt == "jsonl" else (
        b"problem\nfine\ncaf\xe9\n")
    line, _, message = only_error(data, fmt)
    assert line == (2 if fmt == "jsonl" else 3) and "UTF-8" in message


def test_oversized_problem_is_rejected() -> None:
    line, field, message = only_error(jsonl({"problem": "x" * 201}))
    assert (line, field) == (1, "problem") and "over the limit of 200" in message


def test_too_many_problems_is_rejected() -> None:
    line, _, message = only_error(jsonl(*({"problem": str(i)} for i in range(11))))
    assert line == 11 and "more than 10 problems" in message


def test_duplicate_custom_id_names_both_lines() -> None:
    data = jsonl({"problem": "a", "custom_id": "k"}, {"problem": "b", "custom_id": "k"})
    line, field, message = only_error(data)
    assert (line, field) == (2, "custom_id") and "first on line 1" in message


def test_errors_are_collected_up_to_a_cap() -> None:
    data = b"{bad\n" * (MAX_REPORTED_ERRORS + 5)
    with pytest.raises(DatasetError) as caught:
        load(data)
    assert len(caught.value.errors) == MAX_REPORTED_ERRORS and caught.value.total == 25
    assert "first 20 shown" in caught.value.summary()


def test_corrupt_parquet_is_an_error() -> None:
    assert "Parquet" in only_error(b"PAR1 this is not parquet", "parquet")[2]


def test_parse_fields_rejects_unknown_targets() -> None:
    assert parse_fields(["problem=q", "gold=a"]) == {"problem": "q", "gold": "a"}
    with pytest.raises(ValueError, match="FIELD=COLUMN"):
        parse_fields(["answer=a"])


def test_unknown_extension_is_rejected() -> None:
    assert detect_format("data.PARQUET") == "parquet"
    with pytest.raises(DatasetError) as caught:
        detect_format("data.xlsx")
    assert "unknown file type '.xlsx'" in caught.value.errors[0].message


def test_gsm8k_gold_needs_its_marker() -> None:
    assert gsm8k_gold("16 - 3 - 4 = <<16-3-4=9>>9\n#### 1,000") == "1,000"
    with pytest.raises(ValueError):
        gsm8k_gold("no marker here")
