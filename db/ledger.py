"""A batch's token ledger, read when a job of a batch with a token budget starts: what the
batch's finished jobs spent, and how many jobs are finished, running or still to come.
Read from the job and job_cost rows themselves, so it is as exact as the stored costs and
needs no counter to keep right when a worker dies."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ttcq.db.models import FINAL_STATES, Job, JobCost, JobState


@dataclass(frozen=True)
class BatchSpend:
    spent: int  # tokens of the finished jobs (prompt incl. cached + completion + verifier)
    finished: int
    running: int  # other jobs running now (not the one asking)
    total: int


def batch_spend(*, session: Session, job_id: uuid.UUID) -> BatchSpend:
    batch_id = select(Job.batch_id).where(Job.id == job_id).scalar_subquery()
    tokens: Any = (col(JobCost.prompt_tokens) + col(JobCost.completion_tokens)
                   + col(JobCost.verifier_tokens))
    spent = session.exec(select(func.coalesce(func.sum(tokens), 0))
                         .join(Job, col(Job.id) == JobCost.job_id)
                         .where(col(Job.batch_id) == batch_id)).one()
    states = dict(session.exec(select(Job.state, func.count()).where(
        col(Job.batch_id) == batch_id, col(Job.id) != job_id).group_by(col(Job.state))).all())
    finished = sum(states.get(state, 0) for state in FINAL_STATES)
    return BatchSpend(int(spent), finished, states.get(JobState.running, 0),
                      sum(states.values()) + 1)
