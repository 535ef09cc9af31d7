"""Reading a batch's results back: the Postgres JSON path against the Python one, and
writers that hold a row group at most."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.utils.api_factories import store_solution
from ttcq.api import output
from ttcq.api.output import write_results
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Batch
from ttcq.db.results import batch_result_lines, batch_results
from ttcq.worker.service import SessionFactory


def _batch(sessions: SessionFactory, count: int) -> Batch:
    problems = [ProblemIn(line=i + 1, problem=f"p{i}", gold=str(i % 3),
                          custom_id=f"c{i}" if i % 2 else None,
                          meta={"level": i % 5, "tags": ["a", {"b": None}], "ü": "∑"})
                for i in range(count)]
    with sessions() as session:
        batch, ids = create_batch(session=session, owner="o", problems=problems,
                                  config={"strategy": "majority", "n": 3})
    for i, job_id in enumerate(ids[::2]):
        store_solution(sessions, job_id, [str(i % 3), "7", str(i % 3)], selected=i % 3)
    return batch


def test_postgres_json_records_are_the_python_records(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ttcq.db.results.RESULTS_PAGE", 4)  # several pages
    batch = _batch(sessions, 11)
    with sessions() as session:
        python = list(batch_results(session=session, batch_id=batch.id, config=batch.config))
        lines = list(batch_result_lines(session=session, batch_id=batch.id,
                                        config=batch.config))
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(python))
    assert [r["line"] for r in python] == list(range(1, 12))
    assert python[0]["candidates"] and not python[1]["candidates"]


def test_parquet_is_written_in_row_groups_of_one_schema(
    sessions: SessionFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "PARQUET_ROWS_PER_GROUP", 2)
    batch = _batch(sessions, 7)
    with sessions() as session:
        records = list(batch_results(session=session, batch_id=batch.id, config=batch.config))
    records[0]["answer"] = records[1]["answer"] = None  # a first group with no answers
    path = tmp_path / "out.parquet"
    assert write_results(iter(records), path) == 7
    table = pq.read_table(path)
    assert pq.ParquetFile(path).num_row_groups == 4
    assert table.column("line").to_pylist() == list(range(1, 8))
    assert table.column("answer").to_pylist()[2] == records[2]["answer"]
    assert json.loads(table.column("meta").to_pylist()[0]) == records[0]["meta"]
