"""Reads the API needs beyond db.batches and db.results: progress of many batches in one
query, owner-checked jobs, and totals for health and metrics."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, text
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from ttcq.db.models import FINAL_STATES, Batch, Job, JobAttempt, JobCost, JobState


@dataclass
class Progress:
    """A batch's jobs by state, and how many graded jobs (with a gold answer) are correct."""

    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in JobState})
    graded: int = 0
    correct: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # failed jobs by short reason

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(self.counts[s.value] for s in FINAL_STATES)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None


def batch_progress(
    *, session: Session, batch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Progress]:
    """Progress of each batch (every id present, zero when it has no jobs), in one query."""
    progress = {batch_id: Progress() for batch_id in batch_ids}
    if not batch_ids:
        return progress
    # Only failed jobs have a failure reason: grouping by it adds a row per reason, no more.
    query = (
        select_columns(col(Job.batch_id), col(Job.state), col(Job.correct), col(Job.failure),
                       func.count())
        .where(col(Job.batch_id).in_(batch_ids))
        .group_by(col(Job.batch_id), col(Job.state), col(Job.correct), col(Job.failure))
    )
    for batch_id, state, correct, failure, count in session.execute(query):
        entry = progress[batch_id]
        entry.counts[state] += count
        entry.graded += count if correct is not None else 0
        entry.correct += count if correct else 0
        if state == JobState.failed:
            reason = failure or "unknown"
            entry.failures[reason] = entry.failures.get(reason, 0) + count
    return progress


def get_owned_job(*, session: Session, job_id: uuid.UUID, owner: str) -> Job | None:
    """The job, or None if it does not exist or its batch belongs to someone else."""
    query = select(Job).join(Batch).where(Job.id == job_id, Batch.owner == owner)
    return session.exec(query).first()


def job_cost(*, session: Session, job_id: uuid.UUID) -> JobCost | None:
    return session.get(JobCost, job_id)


def jobs_by_state(*, session: Session) -> dict[str, int]:
    """Jobs of every batch by state, every state present."""
    counts = {state.value: 0 for state in JobState}
    for state, count in session.exec(select(Job.state, func.count()).group_by(Job.state)):
        counts[state] = count
    return counts


def interruptions_by_outcome(*, session: Session) -> dict[tuple[str, str], int]:
    """Attempts that ended without a result, all batches, by (outcome, charge)."""
    query = select(JobAttempt.outcome, JobAttempt.charge, func.count()).group_by(
        col(JobAttempt.outcome), col(JobAttempt.charge))
    return {(outcome, charge): count for outcome, charge, count in session.exec(query)}


def ping(*, session: Session) -> None:
    """Raise if the database cannot answer a trivial query."""
    session.exec(text("SELECT 1"))  # type: ignore[call-overload]
