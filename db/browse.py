"""Reads for looking into one batch (the console and the API share them): its problems a page
at a time, filtered and sorted by the database; its failed jobs with their reasons; what it
cost in all; and tokens and throughput per batch for the batch list. Every count and sum is
an aggregate in SQL, so a batch of 100,000 jobs costs a few rows here, not 100,000."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Float, case, cast, func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from ttcq.db.models import Batch, Job, JobCost, JobState
from ttcq.db.reports import job_level, job_tokens

Outcome = Literal["correct", "wrong", "failed", "unfinished"]
ProblemSort = Literal["line", "tokens", "-tokens"]
PREVIEW_CHARS = 160  # of a problem's text in a table row; the job page shows it whole
SAME_PROBLEM_LIMIT = 100


def _tokens() -> Any:
    """A job's tokens, 0 before it has a cost."""
    return func.coalesce(job_tokens(), 0)


def _outcome_filter(outcome: Outcome) -> Any:
    return {
        "correct": col(Job.correct).is_(True),
        "wrong": col(Job.correct).is_(False),
        "failed": col(Job.state) == JobState.failed,
        "unfinished": col(Job.state).in_([JobState.queued, JobState.running]),
    }[outcome]


@dataclass(frozen=True)
class ProblemRows:
    total: int  # rows matching the filters, over all pages
    rows: list[dict[str, Any]]


def problem_rows(
    *, session: Session, batch_id: uuid.UUID, outcome: Outcome | None = None,
    level: str | None = None, sort: ProblemSort = "line", offset: int = 0, limit: int = 50,
) -> ProblemRows:
    """One page of the batch's problems (a row per job), and how many match in all."""
    where = [col(Job.batch_id) == batch_id]
    if outcome is not None:
        where.append(_outcome_filter(outcome))
    if level is not None:
        where.append(job_level() == level)
    tokens = _tokens().label("tokens")
    order = {"line": [col(Job.line)], "tokens": [tokens, col(Job.line)],
             "-tokens": [tokens.desc(), col(Job.line)]}[sort]
    query = (
        select_columns(col(Job.id).label("job_id"), col(Job.line), col(Job.custom_id),
                       func.left(col(Job.problem), PREVIEW_CHARS).label("problem"),
                       job_level().label("level"), col(Job.state), col(Job.gold),
                       col(Job.answer), col(Job.correct), col(Job.failure), tokens)
        .outerjoin(JobCost, col(JobCost.job_id) == Job.id)
        .where(*where).order_by(*order).offset(offset).limit(limit)
    )
    rows = [dict(row._mapping) for row in session.execute(query)]
    total = session.execute(select_columns(func.count()).select_from(Job).where(*where))
    return ProblemRows(total=int(total.scalar_one()), rows=rows)


def same_problem_jobs(*, session: Session, job: Job, owner: str,
                      limit: int = SAME_PROBLEM_LIMIT) -> list[dict[str, Any]]:
    """The owner's other jobs of job's problem, newest batch first, each with its batch,
    strategy, state, answer, grade and tokens. A dataset submitted again keeps its lines, so
    matching the line too keeps this on indexes (owner's batches, then (batch_id, line)):
    the cost grows with the owner's batches, not with their jobs."""
    query = (
        select_columns(col(Job.id).label("job_id"), col(Job.line), col(Job.state),
                       col(Job.answer), col(Job.correct), _tokens().label("tokens"),
                       col(Batch.id).label("batch_id"), col(Batch.name).label("batch_name"),
                       col(Batch.strategy), col(Batch.created_at))
        .join(Batch, col(Batch.id) == Job.batch_id)
        .outerjoin(JobCost, col(JobCost.job_id) == Job.id)
        .where(col(Batch.owner) == owner, col(Job.line) == job.line,
               col(Job.problem) == job.problem, col(Job.id) != job.id)
        .order_by(col(Batch.created_at).desc(), col(Job.id)).limit(limit)
    )
    return [dict(row._mapping) for row in session.execute(query)]


def batch_levels(*, session: Session, batch_id: uuid.UUID) -> list[str]:
    """The distinct `level` values of the batch's problems (for the level filter)."""
    query: Any = (select_columns(job_level()).where(col(Job.batch_id) == batch_id)
             .where(job_level().is_not(None)).distinct())
    return sorted(str(level) for (level,) in session.execute(query))


def failed_jobs(*, session: Session, batch_id: uuid.UUID, limit: int = 100
                ) -> list[dict[str, Any]]:
    """The batch's failed jobs in dataset order: why each failed, and its last error."""
    query: Any = (
        select_columns(col(Job.id).label("job_id"), col(Job.line), col(Job.custom_id),
                       col(Job.failure), col(Job.error), col(Job.attempts))
        .where(col(Job.batch_id) == batch_id, col(Job.state) == JobState.failed)
        .order_by(col(Job.line)).limit(limit)
    )
    return [dict(row._mapping) for row in session.execute(query)]


COST_SUMS = ("prompt_tokens", "cached_tokens", "completion_tokens", "thinking_tokens",
             "verifier_tokens", "verifier_cached_tokens", "engine_calls", "verifier_calls",
             "wasted_tokens")


def batch_cost(*, session: Session, batch_id: uuid.UUID) -> dict[str, Any]:
    """The batch's cost summed over its jobs, with how many jobs have a cost and how many
    of them are correct, in one query."""
    sums = [func.coalesce(func.sum(getattr(JobCost, name)), 0).label(name) for name in COST_SUMS]
    query = (
        select_columns(
            func.count(col(JobCost.job_id)).label("jobs"), *sums,
            func.coalesce(func.sum(JobCost.wall_seconds), 0.0).label("wall_seconds"),
            func.coalesce(func.sum(cast(JobCost.flops, Float)), 0.0).label("flops"),
            func.coalesce(func.sum(case((col(Job.correct).is_(True), 1), else_=0)), 0)
            .label("correct"))
        .select_from(JobCost).join(Job, col(Job.id) == JobCost.job_id)
        .where(col(Job.batch_id) == batch_id)
    )
    return dict(session.execute(query).one()._mapping)


@dataclass(frozen=True)
class Usage:
    """Tokens a batch has spent so far, and when its first job started and last ended."""

    tokens: int = 0
    finished: int = 0  # jobs with an end time
    first_started: datetime | None = None
    last_finished: datetime | None = None

    def jobs_per_minute(self, now: datetime, running: bool) -> float | None:
        """Finished jobs per minute from the first start to the last end (to now while
        jobs are still running); None before a job has ended."""
        end = now if running else self.last_finished
        if not self.finished or self.first_started is None or end is None:
            return None
        minutes = max((end - self.first_started).total_seconds(), 1.0) / 60
        return self.finished / minutes


def batch_usage(*, session: Session, batch_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Usage]:
    """Usage of each batch (every id present), in one grouped query."""
    usage = {batch_id: Usage() for batch_id in batch_ids}
    if not batch_ids:
        return usage
    query = (
        select_columns(col(Job.batch_id), func.sum(_tokens()), func.count(col(Job.finished_at)),
                       func.min(col(Job.started_at)), func.max(col(Job.finished_at)))
        .outerjoin(JobCost, col(JobCost.job_id) == Job.id)
        .where(col(Job.batch_id).in_(batch_ids)).group_by(col(Job.batch_id))
    )
    for batch_id, tokens, finished, first, last in session.execute(query):
        usage[batch_id] = Usage(int(tokens or 0), int(finished), first, last)
    return usage
