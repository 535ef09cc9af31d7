"""Batches: create one with its jobs in one transaction, read counts, cancel."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from db.models import Batch, Job, JobState


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
    problems: Sequence[ProblemIn],
    name: str = "",
    model: str = "",
    priority: int = 0,
) -> tuple[Batch, list[uuid.UUID]]:
    """Store a batch and all its jobs atomically; returns the batch and its job ids."""
    batch = Batch(
        owner=owner,
        name=name,
        model=model,
        strategy=config["strategy"],
        config=config,
        priority=priority,
        total_jobs=len(problems),
    )
    session.add(batch)
    jobs = [
        Job(
            batch_id=batch.id,
            line=p.line,
            custom_id=p.custom_id,
            problem=p.problem,
            gold=p.gold,
            meta=p.meta,
        )
        for p in problems
    ]
    session.add_all(jobs)
    session.commit()
    return batch, [j.id for j in jobs]


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
