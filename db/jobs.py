"""The job row is the system of record: claims with a lease, fenced by the attempt number."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, func, not_, or_, text, update
from sqlalchemy.dialects import postgresql
from sqlmodel import Session, col, select

from db.models import Batch, Job, JobState, utcnow
from db.session import execute_alone, runs_alone


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a job: the attempt number fences out every other attempt."""

    job_id: uuid.UUID
    attempt: int


@dataclass(frozen=True, eq=False)
class ClaimedJob(Claim):
    """A claim with what the worker needs to run it, read by the claim itself."""

    problem: str = ""
    gold: str | None = None
    custom_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)


def _claim_statement() -> Any:
    """The claiming UPDATE, built once: bound values come as parameters."""
    now = bindparam("now", type_=DateTime(timezone=True))
    # A subquery, not UPDATE ... FROM: SQLite's RETURNING sees only the updated table.
    batch_config = select(Batch.config).where(Batch.id == Job.batch_id).scalar_subquery()
    claimable = or_(
        col(Job.state) == JobState.queued,
        and_(col(Job.state) == JobState.running, col(Job.lease_until) < now),
    )
    return (
        update(Job)
        .where(col(Job.id) == bindparam("job_id"), claimable,
               col(Job.attempts) < bindparam("max_attempts"))
        .where(_batch_cancelled().is_(False))
        .values(state=JobState.running, attempts=Job.attempts + 1,
                lease_until=bindparam("lease_until"), worker=bindparam("worker"),
                started_at=now, error=None)
        .returning(col(Job.attempts), col(Job.problem), col(Job.gold), col(Job.custom_id),
                   batch_config)
    )


def claim_job(
    *, session: Session, job_id: uuid.UUID, worker: str, lease_seconds: int, max_attempts: int
) -> ClaimedJob | None:
    """Take a queued job (or one whose lease expired) for this worker, or None if another
    worker holds it, it is final, its batch is cancelled, or it ran out of attempts.
    One statement, one round trip: the UPDATE returns what the search needs, the batch's
    config included. On Postgres, outside a transaction of the caller's, it commits on its
    own (db.session.execute_alone), without waiting for the disk (see RELAXED_COMMIT)."""
    now = utcnow()
    values = {"job_id": job_id, "now": now, "max_attempts": max_attempts, "worker": worker,
              "lease_until": now + timedelta(seconds=lease_seconds)}
    if runs_alone(session):
        rows = execute_alone(session, _PG_CLAIM.string, _PG_CLAIM.construct_params(values))
    else:
        rows = list(session.execute(_CLAIM, values))
        session.commit()
    if not rows:
        return None
    attempt, problem, gold, custom_id, config = rows[0][:5]
    return ClaimedJob(job_id, attempt, problem, gold, custom_id, config)


# A column for the RETURNING of a worker's write on Postgres: its transaction then commits
# without waiting for its WAL to reach disk (synchronous_commit off).
#
# For the worker's own writes (claim, result) only: a commit is then about 0.1 ms instead
# of an fsync (3.5 ms here, the whole budget of a quick job). If Postgres itself crashes,
# the last fraction of a second of such commits can be lost, never half-applied: a lost
# claim leaves the job queued (its message was consumed, so the reaper's resend_lost
# sends it again), a lost result leaves it running until its lease expires and the reaper
# requeues it. The job runs again; none is lost and no result doubles. Submissions and
# cancellations, which nothing could redo, keep synchronous commits.
RELAXED_COMMIT = "set_config('synchronous_commit', 'off', true)"


def _owned(claim: Claim) -> list[Any]:
    return [
        col(Job.id) == claim.job_id,
        col(Job.state) == JobState.running,
        col(Job.attempts) == claim.attempt,
    ]


def renew_leases(
    *, session: Session, claims: Sequence[Claim], lease_seconds: int
) -> set[uuid.UUID]:
    """Extend the leases of the claims still ours whose batch is not cancelled, in one
    statement; returns their job ids (a claim not among them is lost or cancelled)."""
    if not claims:
        return set()
    ours = or_(*(and_(col(Job.id) == c.job_id, col(Job.attempts) == c.attempt)
                 for c in claims))
    rows = session.exec(
        update(Job)
        .where(ours, col(Job.state) == JobState.running, not_(_batch_cancelled()))
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        .returning(col(Job.id))
    ).all()
    session.commit()
    return {row[0] for row in rows}


def finish_job(
    *, session: Session, claim: Claim, state: JobState, error: str | None = None, **values: object
) -> bool:
    """Move our running job to a final state (in the caller's transaction; no commit)."""
    result = session.exec(
        update(Job)
        .where(*_owned(claim))
        .values(state=state, error=error, lease_until=None, finished_at=utcnow(), **values)
    )
    return result.rowcount == 1


def _batch_cancelled() -> Any:
    """True for a job whose batch was cancelled (a correlated subquery on job)."""
    return select(Batch.cancel_requested).where(Batch.id == Job.batch_id).scalar_subquery()


def release_job(*, session: Session, claim: Claim, error: str, max_attempts: int) -> bool:
    """Give a job back to the queue after a transient failure; True if requeued. On its
    last attempt it fails instead, and in a cancelled batch it is cancelled: a queued job
    that no claim can take would wait for ever."""
    if _cancel_if_batch_cancelled(session, [*_owned(claim)]):
        session.commit()
        return False
    out_of_attempts = claim.attempt >= max_attempts
    session.exec(
        update(Job)
        .where(*_owned(claim))
        .values(
            state=JobState.failed if out_of_attempts else JobState.queued,
            error=error,
            lease_until=None,
            finished_at=utcnow() if out_of_attempts else None,
        )
    )
    session.commit()
    return not out_of_attempts


def reap_expired(
    *, session: Session, max_attempts: int, now: datetime | None = None
) -> list[uuid.UUID]:
    """Requeue running jobs whose lease expired (their worker died) and fail those out of
    attempts, in the caller's transaction (no commit). Returns the ids to enqueue again."""
    now = now or utcnow()
    expired = and_(col(Job.state) == JobState.running, col(Job.lease_until) < now)
    _cancel_if_batch_cancelled(session, [expired], now)
    session.exec(
        update(Job)
        .where(expired, col(Job.attempts) >= max_attempts)
        .values(
            state=JobState.failed,
            error="worker lost: lease expired on the last attempt",
            finished_at=now,
            lease_until=None,
        )
    )
    requeued = session.exec(
        update(Job)
        .where(expired, col(Job.attempts) < max_attempts)
        .values(state=JobState.queued, error="worker lost: lease expired", lease_until=None)
        .returning(col(Job.id))
    ).scalars()
    return list(requeued)


def _cancel_if_batch_cancelled(
    session: Session, where: list[Any], now: datetime | None = None
) -> int:
    """Cancel the running jobs matching `where` whose batch was cancelled; how many."""
    result = session.exec(
        update(Job)
        .where(*where, _batch_cancelled().is_(True))
        .values(state=JobState.cancelled, error="batch cancelled", lease_until=None,
                finished_at=now or utcnow())
    )
    return result.rowcount


def queued_counts_by_model(*, session: Session) -> dict[str, int]:
    query = (
        select(Batch.model, func.count()).join(Job)
        .where(Job.state == JobState.queued).group_by(Batch.model)
    )
    return dict(session.exec(query).all())


def queued_ids_of_model(*, session: Session, model: str) -> list[uuid.UUID]:
    query = select(Job.id).join(Batch).where(Job.state == JobState.queued, Batch.model == model)
    return list(session.exec(query))


def batch_routes(
    *, session: Session, job_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, str]]:
    """Each job's batch (priority, model), to re-enqueue reaped jobs where they were."""
    query = (
        select(Job.id, Batch.priority, Batch.model).join(Batch).where(col(Job.id).in_(job_ids))
    )
    return {job_id: (priority, model) for job_id, priority, model in session.exec(query)}


def get_job(*, session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def queued_job_ids(*, session: Session, batch_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    query = select(Job.id).where(Job.state == JobState.queued)
    if batch_id is not None:
        query = query.where(Job.batch_id == batch_id)
    return list(session.exec(query.order_by(col(Job.line))))


_CLAIM = _claim_statement()
_PG_CLAIM = _CLAIM.returning(text(RELAXED_COMMIT)).compile(dialect=postgresql.dialect())
