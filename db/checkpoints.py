"""Search checkpoints: a job's journal (worker.journal) in rows of calls, appended at step
boundaries by the attempt that holds the job, read back when a later attempt resumes."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, LargeBinary, String, bindparam, delete, insert, text
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql
from sqlmodel import Session, col, select

from ttcq.db.jobs import RELAXED_COMMIT, Claim
from ttcq.db.models import Job, JobCheckpoint, JobState
from ttcq.db.session import execute_alone, runs_alone


@dataclass(frozen=True)
class StoredCheckpoint:
    blobs: list[bytes]  # each row's calls, in order
    calls: int
    next_key: str  # the call that was about to start at the last save
    elapsed: float  # the search's seconds up to the last save, over its attempts


def save_checkpoint(
    *, session: Session, claim: Claim, seq: int, calls: int, data: bytes, next_key: str,
    elapsed: float, rewrite: bool = False,
) -> bool:
    """Append calls [seq, seq + calls) of our job's journal; with rewrite, the rows from
    seq on are replaced. False, and nothing written, if the job is no longer ours."""
    values = {"job_id": claim.job_id, "attempt": claim.attempt, "seq": seq, "calls": calls,
              "next_key": next_key, "elapsed": elapsed, "data": data}
    if runs_alone(session) and not rewrite:
        return bool(execute_alone(session, _PG_APPEND.string,
                                  _PG_APPEND.construct_params(values)))
    if rewrite:
        session.exec(delete(JobCheckpoint).where(col(JobCheckpoint.job_id) == claim.job_id,
                                                 col(JobCheckpoint.seq) >= seq))
    inserted = session.connection().execute(_APPEND, values).rowcount
    session.commit()
    return bool(inserted)


def load_checkpoint(*, session: Session, job_id: uuid.UUID) -> StoredCheckpoint | None:
    """The job's checkpoint, or None if it has none. Rows are contiguous by construction;
    should one be missing, only the calls before the gap are taken."""
    rows = session.exec(select(JobCheckpoint).where(JobCheckpoint.job_id == job_id)
                        .order_by(col(JobCheckpoint.seq))).all()
    blobs, calls, last = [], 0, None
    for row in rows:
        if row.seq != calls:
            break
        blobs.append(row.data)
        calls += row.calls
        last = row
    if last is None:
        return None
    return StoredCheckpoint(blobs, calls, last.next_key, last.elapsed)


def drop_checkpoint(*, session: Session, job_id: uuid.UUID) -> None:
    session.exec(delete(JobCheckpoint).where(col(JobCheckpoint.job_id) == job_id))
    session.commit()


def _append() -> Any:
    """Insert a row for our job only, behind its attempt fence. FOR SHARE holds the job
    row until the insert commits, so a new claim (which updates that row) waits for it
    and then sees it: a resuming attempt never misses a row its predecessor wrote."""
    fenced = (
        select_columns(col(Job.id), bindparam("seq", type_=Integer),
                       bindparam("calls", type_=Integer), col(Job.attempts),
                       bindparam("next_key", type_=String), bindparam("elapsed", type_=Float),
                       bindparam("data", type_=LargeBinary))
        .where(col(Job.id) == bindparam("job_id"), col(Job.state) == JobState.running,
               col(Job.attempts) == bindparam("attempt"))
        .with_for_update(read=True)
    )
    return insert(JobCheckpoint).from_select(
        ["job_id", "seq", "calls", "attempt", "next_key", "elapsed", "data"], fenced)


_APPEND = _append()
# On Postgres: one round trip, committed without waiting for the disk (a checkpoint lost
# in a database crash only means resuming from an earlier one).
_PG_APPEND = _APPEND.returning(text(RELAXED_COMMIT)).compile(dialect=postgresql.dialect())
