"""Trace storage: rows per second ttcq's bulk insert of a trace achieves (one
`INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING`, db.bulk) against a raw
`COPY trace_node FROM STDIN` of the same rows into the same table, measured in one run.

The traces are real: beam search over the instant engine of search_overhead, N=64 and
N=256 to 16 and 40 steps (1,025 and 10,241 nodes). Each repeat stores the trace under a
fresh job id (no conflicts), alternating ttcq and COPY so that drift in the machine's load
hits both alike; a first round warms both paths and is not counted. Statements are counted
with a SQLAlchemy cursor hook: one per table is the claim made in DESIGN §5."""

import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from bench_db import bench_database, libpq_url
from search_overhead import PROBLEM, STEP_IDS, InstantEngine, InstantVerifier
from sqlalchemy import Engine, Table, event, func
from sqlmodel import Session, col, select

from db.batches import ProblemIn, create_batch
from db.bulk import insert_ignoring_conflicts
from db.jobs import claim_job
from db.models import JobCostBase, TraceNode
from db.results import result_rows, store_result
from db.session import get_engine
from worker.search.config import SearchConfig, make_config
from worker.search.registry import run_search
from worker.search.types import SearchResult

RESULTS = Path(__file__).parent / "results"
TRACES = [(64, 16), (256, 40)]  # (N, max_depth) of the beam searches whose traces are stored
REPEATS = 5
TRACE: Table = TraceNode.__table__  # type: ignore[attr-defined]
Rows = list[dict[str, Any]]


class StatementCounter:
    """Counts the statements SQLAlchemy sends on engine while the block runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.count = engine, 0

    def _count(self, *_: object) -> None:
        self.count += 1

    def __enter__(self) -> "StatementCounter":
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def beam_config(n: int, depth: int) -> SearchConfig:
    return make_config(
        strategy="beam_search", n=n, beam_width=4, max_depth=depth,
        max_step_tokens=len(STEP_IDS), max_tokens=len(STEP_IDS) * (depth + 1),
        verifier="checker",  # only validated: the instant verifier is passed in
    )


def new_jobs(url: str, config: SearchConfig, count: int) -> list[uuid.UUID]:
    """Job rows for the traces to hang on (trace_node references job)."""
    problems = [ProblemIn(line=i + 1, problem=PROBLEM.text) for i in range(count)]
    with Session(get_engine(url)) as session:
        _, ids = create_batch(session=session, owner="bench", config=config.model_dump(),
                              problems=problems)
    return ids


def trace_rows(job_id: uuid.UUID, result: SearchResult) -> Rows:
    """The trace_node rows exactly as the worker builds them for store_result."""
    return result_rows(job_id, None, result, JobCostBase())[TRACE]


def ttcq_insert(url: str, rows: Rows) -> tuple[float, int]:
    """Seconds and statements for ttcq's bulk insert of one trace, commit included."""
    engine = get_engine(url)
    with Session(engine) as session:
        session.connection()  # check out (and pre-ping) before the clock starts
        with StatementCounter(engine) as counter:
            start = time.perf_counter()
            insert_ignoring_conflicts(session, TRACE, rows)
            session.commit()
            seconds = time.perf_counter() - start
    return seconds, counter.count


def copy_insert(conn: psycopg.Connection[Any], rows: Rows) -> float:
    """Seconds for the baseline: the same rows through COPY FROM STDIN, commit included.
    Both sides start from the same list of dicts, so picking values out is on both clocks."""
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    start = time.perf_counter()
    with conn.cursor() as cursor, cursor.copy(f"COPY trace_node ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])
    conn.commit()
    return time.perf_counter() - start


def stored_nodes(url: str, job_id: uuid.UUID) -> int:
    with Session(get_engine(url)) as session:
        query = select(func.count()).select_from(TraceNode).where(col(TraceNode.job_id) == job_id)
        return session.exec(query).one()


def store_whole_result(url: str, job_id: uuid.UUID, result: SearchResult) -> tuple[float, int]:
    """Seconds and statements for store_result itself (finish the job, write all four
    tables, commit) on a job claimed the way a worker claims it."""
    engine = get_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        claim = claim_job(session=session, job_id=job_id, worker="bench", lease_seconds=60,
                          max_attempts=3)
        if claim is None:
            raise RuntimeError(f"could not claim job {job_id}")
        with StatementCounter(engine) as counter:
            start = time.perf_counter()
            stored = store_result(session=session, claim=claim, gold="48", result=result,
                                  cost=JobCostBase())
            seconds = time.perf_counter() - start
    if not stored:
        raise RuntimeError(f"store_result refused job {job_id}")
    return seconds, counter.count


def rate(rows: int, seconds: list[float]) -> float:
    return rows / statistics.median(seconds)


def measure(url: str, n: int, depth: int) -> dict[str, object]:
    config = beam_config(n, depth)
    result = run_search(PROBLEM, config, InstantEngine(), InstantVerifier())
    jobs = new_jobs(url, config, 2 * (REPEATS + 1) + 1)
    nodes = len(result.trace.nodes)
    ttcq_s: list[float] = []
    copy_s: list[float] = []
    statements: set[int] = set()
    with psycopg.connect(libpq_url(url)) as conn:
        for i in range(REPEATS + 1):
            seconds, count = ttcq_insert(url, trace_rows(jobs[2 * i], result))
            baseline = copy_insert(conn, trace_rows(jobs[2 * i + 1], result))
            if i:  # round 0 only warms up
                ttcq_s.append(seconds)
                copy_s.append(baseline)
                statements.add(count)
    # Both paths stored every node (a silent ON CONFLICT skip would flatter ttcq).
    if {stored_nodes(url, jobs[-3]), stored_nodes(url, jobs[-2])} != {nodes}:
        raise RuntimeError(f"a trace of {nodes} nodes was not stored whole")
    store_s, store_statements = store_whole_result(url, jobs[-1], result)
    ttcq_rate, copy_rate = rate(nodes, ttcq_s), rate(nodes, copy_s)
    tables = result_rows(jobs[-1], None, result, JobCostBase())
    return {
        "n": n, "max_depth": depth, "trace_nodes": nodes, "repeats": REPEATS,
        "ttcq_rows_per_s": round(ttcq_rate), "copy_rows_per_s": round(copy_rate),
        "ttcq_over_copy": round(ttcq_rate / copy_rate, 2),
        "ttcq_ms": round(1e3 * statistics.median(ttcq_s), 1),
        "copy_ms": round(1e3 * statistics.median(copy_s), 1),
        "ttcq_statements_per_trace": max(statements),  # the worst repeat
        "copy_statements_per_trace": 1,  # one COPY by construction
        "store_result_rows": sum(len(rows) for rows in tables.values()),
        "store_result_statements": store_statements,
        "store_result_ms": round(1e3 * store_s, 1),
    }


def main() -> list[dict[str, object]]:
    with bench_database("ttcq_bench_trace") as url:
        rows = [measure(url, n, depth) for n, depth in TRACES]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trace_storage.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
