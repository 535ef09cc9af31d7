"""A job's attempts: handing one back charged by the blame rule (db.blame), marking a run
alone, the attempt history, and running failed jobs again."""

import uuid
from datetime import datetime

from sqlalchemy import and_, func, insert, update
from sqlmodel import Session, col, select

from ttcq.db.blame import Charge, Outcome, charge_for
from ttcq.db.jobs import Claim, cancel_if_batch_cancelled, owned
from ttcq.db.models import Job, JobAttempt, JobState, utcnow


def hand_back(
    *, session: Session, claim: Claim, outcome: Outcome, message: str, progress: bool,
    alone: bool, max_attempts: int, worker: str | None = None,
) -> JobState | None:
    """Give our running job back to the queue, charged as the rule says, and record the
    attempt. Returns its state: queued (the caller sends its message again), failed (out
    of strikes), cancelled (its batch was), or None if the job is no longer ours."""
    if cancel_if_batch_cancelled(session, owned(claim)):
        session.commit()
        return JobState.cancelled
    charge = charge_for(outcome=outcome, progress=progress, alone=alone)
    row = session.exec(select(Job.strikes, Job.started_at).where(*owned(claim))).first()
    if row is None:
        session.rollback()
        return None
    strikes, started_at = row
    out = charge == "strike" and strikes + 1 >= max_attempts
    session.exec(update(Job).where(*owned(claim)).values(
        state=JobState.failed if out else JobState.queued,
        strikes=Job.strikes + int(charge == "strike"),
        stalls=0 if progress else Job.stalls + int(charge == "stall"),
        alone=False, lease_until=None, error=message,
        failure=_failure_of(outcome) if out else None,
        finished_at=utcnow() if out else None))
    record_attempt(session=session, claim=claim, outcome=outcome, charge=charge,
                   progress=progress, message=message, worker=worker, started_at=started_at)
    session.commit()
    return JobState.failed if out else JobState.queued


def _failure_of(outcome: Outcome) -> str:
    return {"lost": "worker_lost", "outage": "engine_lost"}.get(outcome, outcome)


def record_attempt(
    *, session: Session, claim: Claim, outcome: Outcome, charge: Charge, progress: bool,
    message: str, worker: str | None = None, started_at: datetime | None = None,
) -> None:
    """One row of the job's history (in the caller's transaction)."""
    session.exec(insert(JobAttempt).values(
        job_id=claim.job_id, attempt=claim.attempt, worker=worker, started_at=started_at,
        ended_at=utcnow(), outcome=outcome, charge=charge, progress=progress,
        message=message))


def mark_alone(*, session: Session, claim: Claim) -> bool:
    """Our job now runs with no other in its worker: a loss from here on is its own."""
    result = session.exec(update(Job).where(*owned(claim)).values(alone=True))
    session.commit()
    return result.rowcount == 1


def retry_failed(*, session: Session, batch_id: uuid.UUID) -> list[uuid.UUID]:
    """Put a batch's failed jobs back in the queue with fresh strikes and stalls; their
    history keeps what each failure said. Returns the ids to enqueue (after commit). A
    checkpoint a failed job saved is kept: its search resumes there."""
    ids = session.exec(
        update(Job)
        .where(col(Job.batch_id) == batch_id, col(Job.state) == JobState.failed)
        .values(state=JobState.queued, strikes=0, stalls=0, alone=False, error=None,
                failure=None, finished_at=None, lease_until=None)
        .returning(col(Job.id))
    ).scalars().all()
    session.commit()
    return list(ids)


def failures_by_reason(*, session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    """A batch's failed jobs counted by their short reason."""
    rows = session.exec(
        select(Job.failure, func.count())
        .where(and_(col(Job.batch_id) == batch_id, col(Job.state) == JobState.failed))
        .group_by(col(Job.failure))
    ).all()
    # Jobs that failed before reasons were recorded have none.
    return {str(reason or "unknown"): int(count) for reason, count in rows}


def attempt_history(*, session: Session, job_id: uuid.UUID) -> list[JobAttempt]:
    query = select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(
        col(JobAttempt.attempt))
    return list(session.exec(query))


def fail_job(
    *, session: Session, claim: Claim, failure: str, message: str, progress: bool,
    worker: str | None = None,
) -> bool:
    """Fail our job for good (its search raised, its request was refused, its time ran
    out) and record the attempt; False if the job is no longer ours."""
    started_at = session.exec(select(Job.started_at).where(*owned(claim))).first()
    done = session.exec(update(Job).where(*owned(claim)).values(
        state=JobState.failed, error=message, failure=failure, lease_until=None,
        finished_at=utcnow())).rowcount == 1
    if done:
        record_attempt(session=session, claim=claim, outcome="failed", charge="strike",
                       progress=progress, message=message, worker=worker,
                       started_at=started_at)
    session.commit()
    return done
