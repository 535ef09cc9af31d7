"""Trace storage: rows per second ttcq's store of a solved job achieves (db.result_store:
the fenced statement that finishes the job and writes candidates, curve and cost, then
the trace through COPY, in one transaction) against a raw `COPY ... FROM STDIN` of the
same rows into the same four tables, measured in one run. Both commit with
synchronous_commit off (the worker's results do; see db.jobs.relaxed_commit), so the
comparison is of writing, not of waiting for the disk.

The traces are real: beam search over the instant engine of search_overhead, N=16, 64
and 256 to 8, 16 and 40 steps (129, 1,025 and 10,241 nodes); the smallest goes as one
statement, the others by COPY. Each repeat stores the result under a fresh job (claimed
before the clock starts), alternating ttcq and COPY so that drift in the machine's load
hits both alike; a first round warms both paths and is not counted."""

import json
import statistics
import time
import uuid
from typing import Any

import psycopg
from sqlalchemy import Table, func
from sqlmodel import Session, col, select

from bench.common import bench_database, libpq_url, save_results
from bench.search_overhead import PROBLEM, STEP_IDS, InstantEngine, InstantVerifier
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.jobs import claim_job
from ttcq.db.models import JobCostBase, TraceNode
from ttcq.db.result_store import COPY_MIN_ROWS, store_rows
from ttcq.db.session import get_engine
from ttcq.worker.search.config import SearchConfig, make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import SearchResult
from ttcq.worker.stored import solved_job

TRACES = [(16, 8), (64, 16), (256, 40)]  # (N, max_depth) of the beam searches stored
REPEATS = 5
TRACE: Table = TraceNode.__table__  # type: ignore[attr-defined]
Tables = dict[Table, list[dict[str, Any]]]


def beam_config(n: int, depth: int) -> SearchConfig:
    return make_config(
        strategy="beam_search", n=n, beam_width=4, max_depth=depth,
        max_step_tokens=len(STEP_IDS), max_tokens=len(STEP_IDS) * (depth + 1),
        verifier="checker",  # only validated: the instant verifier is passed in
    )


def new_jobs(url: str, config: SearchConfig, count: int) -> list[uuid.UUID]:
    """Job rows for the results to hang on (every result table references job)."""
    problems = [ProblemIn(line=i + 1, problem=PROBLEM.text) for i in range(count)]
    with Session(get_engine(url)) as session:
        _, ids = create_batch(session=session, owner="bench", config=config.model_dump(),
                              problems=problems)
    return ids


def tables_of(job_id: uuid.UUID, result: SearchResult) -> Tables:
    """The rows exactly as the worker builds them for store_result."""
    return solved_job(job_id, "48", result, JobCostBase()).tables()


def ttcq_store(url: str, job_id: uuid.UUID, result: SearchResult) -> float:
    """Seconds for db.result_store.store_rows of one result, commit included."""
    tables = tables_of(job_id, result)
    with Session(get_engine(url), expire_on_commit=False) as session:
        claim = claim_job(session=session, job_id=job_id, worker="bench", lease_seconds=60,
                          max_attempts=3)
        if claim is None:
            raise RuntimeError(f"could not claim job {job_id}")
        start = time.perf_counter()
        stored = store_rows(session=session, claim=claim, tables=tables,
                            finish={"answer": "48", "correct": True})
        seconds = time.perf_counter() - start
    if not stored:
        raise RuntimeError(f"store_rows refused job {job_id}")
    return seconds


def copy_store(conn: psycopg.Connection[Any], job_id: uuid.UUID, result: SearchResult) -> float:
    """Seconds for the baseline: the same rows through one COPY per table, commit included.
    Both sides start from the same dicts, so picking values out is on both clocks."""
    tables = tables_of(job_id, result)
    start = time.perf_counter()
    with conn.cursor() as cursor:
        for table, rows in tables.items():
            columns = list(rows[0])
            names = ", ".join(f'"{c}"' for c in columns)
            with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([_copy_value(row[c]) for c in columns])
    conn.commit()
    return time.perf_counter() - start


def _copy_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list) else value


def stored_rows(url: str, job_id: uuid.UUID) -> int:
    with Session(get_engine(url)) as session:
        query = select(func.count()).select_from(TraceNode).where(col(TraceNode.job_id) == job_id)
        return session.exec(query).one()


def rate(rows: int, seconds: list[float]) -> float:
    return rows / statistics.median(seconds)


def measure(url: str, n: int, depth: int) -> dict[str, object]:
    config = beam_config(n, depth)
    result = run_search(PROBLEM, config, InstantEngine(), InstantVerifier())
    jobs = new_jobs(url, config, 2 * (REPEATS + 1))
    rows = sum(len(r) for r in tables_of(jobs[0], result).values())
    ttcq_s: list[float] = []
    copy_s: list[float] = []
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("SET synchronous_commit = off")
        for i in range(REPEATS + 1):
            seconds = ttcq_store(url, jobs[2 * i], result)
            baseline = copy_store(conn, jobs[2 * i + 1], result)
            if i:  # round 0 only warms up
                ttcq_s.append(seconds)
                copy_s.append(baseline)
    # Both paths stored every node (a silent ON CONFLICT skip would flatter ttcq).
    nodes = len(result.trace.nodes)
    if {stored_rows(url, jobs[-2]), stored_rows(url, jobs[-1])} != {nodes}:
        raise RuntimeError(f"a trace of {nodes} nodes was not stored whole")
    ttcq_rate, copy_rate = rate(rows, ttcq_s), rate(rows, copy_s)
    return {
        "n": n, "max_depth": depth, "trace_nodes": nodes, "result_rows": rows,
        "repeats": REPEATS, "path": "copy" if nodes >= COPY_MIN_ROWS else "one statement",
        "ttcq_rows_per_s": round(ttcq_rate), "copy_rows_per_s": round(copy_rate),
        "ttcq_over_copy": round(ttcq_rate / copy_rate, 2),
        "ttcq_ms": round(1e3 * statistics.median(ttcq_s), 1),
        "copy_ms": round(1e3 * statistics.median(copy_s), 1),
    }


def main() -> list[dict[str, object]]:
    with bench_database("ttcq_bench_trace") as url:
        rows = [measure(url, n, depth) for n, depth in TRACES]
    save_results("trace_storage", rows)
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
