"""Batches: create one with its jobs in one transaction, read counts, cancel."""

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sqlalchemy import Table, func, insert, update
from sqlmodel import Session, col, select

from ttcq.db.bulk import copy_rows
from ttcq.db.models import Batch, Job, JobState
from ttcq.ids import uuid4s

JOB_COLUMNS = ("id", "batch_id", "line", "custom_id", "problem", "gold", "meta", "state",
               "attempts")
INSERT_CHUNK = 1000  # rows per executemany where there is no COPY (SQLite)
IDS_AT_ONCE = 1000
_JOB_TABLE: Table = Job.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ProblemIn:
    line: int
    problem: str
    gold: str | None = None
    custom_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def create_batch(
    *,
    session: Session,
    owner: str,
    config: dict[str, Any],
    problems: Iterable[ProblemIn],
    name: str = "",
    model: str = "",
    priority: int = 0,
) -> tuple[Batch, list[uuid.UUID]]:
    """Store a batch and its jobs in one transaction; returns the batch and its job ids
    in dataset order. problems may be a stream: on Postgres the jobs go through one COPY
    as they come, and an exception from the stream (a bad line at the end) stores
    nothing."""
    batch = Batch(owner=owner, name=name, model=model, strategy=config["strategy"],
                  config=config, priority=priority)
    session.add(batch)
    session.flush()
    job_ids = write_jobs(session=session, batch_id=batch.id, problems=problems)
    if not job_ids:  # a batch without jobs is never wanted; a used-up stream makes one
        session.rollback()
        raise ValueError("a batch needs at least one problem (was the stream already read?)")
    batch.total_jobs = len(job_ids)
    session.commit()
    return batch, job_ids


def write_jobs(
    *, session: Session, batch_id: uuid.UUID, problems: Iterable[ProblemIn]
) -> list[uuid.UUID]:
    """Queued job rows for problems, in the caller's transaction; their ids in order."""
    job_ids: list[uuid.UUID] = []
    numbered = _with_ids(problems, job_ids)
    if session.get_bind().dialect.name == "postgresql":
        rows = (_job_row(batch_id, job_id, p) for job_id, p in numbered)
        copy_rows(session, _JOB_TABLE, JOB_COLUMNS, rows)
        return job_ids
    dicts = ({**dict(zip(JOB_COLUMNS, _job_row(batch_id, job_id, p), strict=True)),
              "meta": p.meta} for job_id, p in numbered)  # SQLAlchemy encodes JSON itself
    while chunk := list(islice(dicts, INSERT_CHUNK)):
        session.execute(insert(_JOB_TABLE), chunk)
    return job_ids


def _with_ids(
    problems: Iterable[ProblemIn], handed_out: list[uuid.UUID]
) -> Iterator[tuple[uuid.UUID, ProblemIn]]:
    """Each problem with a fresh job id (drawn IDS_AT_ONCE at a time), recorded in
    handed_out in order."""
    spare: list[uuid.UUID] = []
    for problem in problems:
        spare = spare or uuid4s(IDS_AT_ONCE)
        handed_out.append(job_id := spare.pop())
        yield job_id, problem


def _job_row(batch_id: uuid.UUID, job_id: uuid.UUID, problem: ProblemIn) -> tuple[Any, ...]:
    meta = json.dumps(problem.meta, ensure_ascii=False)
    return (job_id, batch_id, problem.line, problem.custom_id, problem.problem, problem.gold,
            meta, JobState.queued.value, 0)


def get_batch(*, session: Session, batch_id: uuid.UUID, owner: str | None = None) -> Batch | None:
    """The batch, or None if it does not exist or belongs to someone else."""
    batch = session.get(Batch, batch_id)
    if batch is None or (owner is not None and batch.owner != owner):
        return None
    return batch


def list_batches(*, session: Session, owner: str, limit: int = 50) -> list[Batch]:
    query = (
        select(Batch)
        .where(Batch.owner == owner)
        .order_by(col(Batch.created_at).desc())
        .limit(limit)
    )
    return list(session.exec(query))


def batch_counts(*, session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    """Jobs by state, every state present (zero when none)."""
    counts = {state.value: 0 for state in JobState}
    query = select(Job.state, func.count()).where(Job.batch_id == batch_id).group_by(Job.state)
    for state, count in session.exec(query):
        counts[state] = count
    return counts


def cancel_batch(*, session: Session, batch_id: uuid.UUID) -> int:
    """Flag the batch and cancel its queued jobs; running ones stop at their next check.
    Returns how many queued jobs were cancelled."""
    session.exec(update(Batch).where(col(Batch.id) == batch_id).values(cancel_requested=True))
    result = session.exec(
        update(Job)
        .where(col(Job.batch_id) == batch_id, col(Job.state) == JobState.queued)
        .values(state=JobState.cancelled, finished_at=func.now())
    )
    session.commit()
    return result.rowcount
