"""The job row is the system of record: claims with a lease, fenced by the attempt number."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, bindparam, exists, func, insert, not_, or_, text, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects import postgresql
from sqlmodel import Session, col, select

from ttcq.db.blame import charge_for
from ttcq.db.models import Batch, Job, JobAttempt, JobCheckpoint, JobState, utcnow
from ttcq.db.session import execute_alone, runs_alone


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
    stalls: int = 0  # shared interruptions in a row without progress (db.blame)
    resumable: bool = False  # an earlier attempt saved a checkpoint
    after_loss: bool = False  # the attempt before this one was lost (its worker died)
    source_job_id: uuid.UUID | None = None  # a label job: the job whose candidates it labels


def _claim_statement() -> Any:
    """The claiming UPDATE, built once: bound values come as parameters."""
    now = bindparam("now", type_=DateTime(timezone=True))
    # A subquery, not UPDATE ... FROM: SQLite's RETURNING sees only the updated table.
    batch_config = select(Batch.config).where(Batch.id == Job.batch_id).scalar_subquery()
    claimable = or_(
        col(Job.state) == JobState.queued,
        and_(col(Job.state) == JobState.running, col(Job.lease_until) < now),
    )
    # Only a job claimed before can have a checkpoint: the first claim never looks.
    has_checkpoint = and_(col(Job.attempts) > 1,
                          exists().where(col(JobCheckpoint.job_id) == Job.id))
    after_loss = and_(col(Job.attempts) > 1, exists().where(
        col(JobAttempt.job_id) == Job.id, col(JobAttempt.attempt) == Job.attempts - 1,
        col(JobAttempt.outcome) == "lost"))
    return (
        update(Job)
        .where(col(Job.id) == bindparam("job_id"), claimable,
               col(Job.strikes) < bindparam("max_attempts"))
        .where(_batch_cancelled().is_(False))
        .values(state=JobState.running, attempts=Job.attempts + 1,
                lease_until=bindparam("lease_until"), worker=bindparam("worker"),
                started_at=now, error=None, alone=False)
        .returning(col(Job.attempts), col(Job.problem), col(Job.gold), col(Job.custom_id),
                   batch_config, col(Job.stalls), has_checkpoint, after_loss,
                   col(Job.source_job_id))
    )


def claim_job(
    *, session: Session, job_id: uuid.UUID, worker: str, lease_seconds: int, max_attempts: int
) -> ClaimedJob | None:
    """Take a queued job (or one whose lease expired) for this worker, or None if another
    worker holds it, it is final, its batch is cancelled, or it ran out of strikes.
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
    attempt, problem, gold, custom_id, config, stalls, resumable, after_loss, source = rows[0][:9]
    return ClaimedJob(job_id, attempt, problem, gold, custom_id, config, stalls,
                      bool(resumable), bool(after_loss), _uuid(source))


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


def _uuid(value: Any) -> uuid.UUID | None:
    """A uuid column as RETURNING gives it (SQLite's raw statement gives text)."""
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def owned(claim: Claim) -> list[Any]:
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
        .where(*owned(claim))
        .values(state=state, error=error, lease_until=None, finished_at=utcnow(), **values)
    )
    return result.rowcount == 1


def _batch_cancelled() -> Any:
    """True for a job whose batch was cancelled (a correlated subquery on job)."""
    return select(Batch.cancel_requested).where(Batch.id == Job.batch_id).scalar_subquery()


def reap_expired(
    *, session: Session, max_attempts: int, now: datetime | None = None
) -> list[uuid.UUID]:
    """Requeue running jobs whose lease expired (their worker died), charged by the blame
    rule (db.blame), and fail those out of strikes, in the caller's transaction (no
    commit); each lost attempt joins the job's history. Returns the ids to enqueue again.
    Rows are locked as read (SKIP LOCKED): reapers on many workers split them."""
    now = now or utcnow()
    expired = and_(col(Job.state) == JobState.running, col(Job.lease_until) < now)
    cancel_if_batch_cancelled(session, [expired], now)
    progress = exists().where(col(JobCheckpoint.job_id) == Job.id,
                              col(JobCheckpoint.attempt) == Job.attempts)
    rows = session.execute(
        select_columns(col(Job.id), col(Job.attempts), col(Job.alone), col(Job.strikes),
                       col(Job.worker), col(Job.started_at), progress)
        .where(expired).with_for_update(skip_locked=True, of=Job)
    ).all()
    requeued, history = [], []
    for job_id, attempt, alone, strikes, worker, started_at, progressed in rows:
        charge = charge_for(outcome="lost", progress=progressed, alone=alone)
        out = charge == "strike" and strikes + 1 >= max_attempts
        message = _loss_message(charge, out, strikes + 1, max_attempts)
        session.exec(update(Job).where(col(Job.id) == job_id, col(Job.attempts) == attempt)
                     .values(state=JobState.failed if out else JobState.queued,
                             strikes=Job.strikes + int(charge == "strike"),
                             stalls=0 if progressed else Job.stalls + int(charge == "stall"),
                             alone=False,
                             lease_until=None, error=message,
                             failure="worker_lost" if out else None,
                             finished_at=now if out else None))
        history.append({"job_id": job_id, "attempt": attempt, "worker": worker,
                        "started_at": started_at, "ended_at": now, "outcome": "lost",
                        "charge": charge, "progress": progressed, "message": message})
        if not out:
            requeued.append(job_id)
    if history:
        session.execute(insert(JobAttempt), history)
    return requeued


def _loss_message(charge: str, out: bool, strikes: int, max_attempts: int) -> str:
    if out:
        return (f"worker lost {strikes} times while this job ran alone, before its first "
                "checkpoint: it crashes or hangs its worker")
    return {
        "none": "worker lost: lease expired; resumes from its checkpoint",
        "stall": "worker lost with its other jobs: lease expired (not charged)",
        "strike": f"worker lost while this job ran alone: strike {strikes} of {max_attempts}",
    }[charge]


def cancel_if_batch_cancelled(
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


def job_states(*, session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, JobState]:
    """The state of each of job_ids that exists."""
    query = select(Job.id, Job.state).where(col(Job.id).in_(job_ids))
    return {job_id: JobState(state) for job_id, state in session.exec(query)}


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
