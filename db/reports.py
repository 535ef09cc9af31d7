"""What a report reads: accuracy and cost by batch (or rescore), level and budget, counted
by the database (a few rows per configuration, whatever the number of problems)."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, case, cast, func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from ttcq.db.models import Batch, BudgetPoint, Job, JobCost, Rescore, RescoreCost, RescorePoint


@dataclass(frozen=True)
class CurveRow:
    """Problems of one batch (or rescore) at one level and budget."""

    source: uuid.UUID  # a batch id, or a rescore id
    level: str | None
    n: int
    problems: int
    graded: int
    correct: int
    tokens: float  # summed over the problems, for the whole run (at its full budget)
    flops: float
    generated: float = 0.0  # completion tokens, summed as tokens are
    thinking: float = 0.0  # of those, the ones inside thoughts


def job_level() -> Any:
    """A job's level, as its dataset row gave it (MATH-500's field)."""
    return col(Job.meta)["level"].as_string()


def job_tokens() -> Any:
    """A job's tokens: prompt, completion and verifier."""
    return JobCost.prompt_tokens + JobCost.completion_tokens + JobCost.verifier_tokens


def _generated() -> list[Any]:
    return [func.sum(JobCost.completion_tokens), func.sum(JobCost.thinking_tokens)]


def _counts(point: Any) -> list[Any]:
    return [
        func.count(),
        func.count(point.correct),
        func.sum(case((point.correct, 1), else_=0)),
    ]


def batch_curves(*, session: Session, batch_ids: Sequence[uuid.UUID]) -> list[CurveRow]:
    level = job_level()
    query = (
        select_columns(col(Job.batch_id), level, col(BudgetPoint.n), *_counts(BudgetPoint),
                       func.sum(job_tokens()), func.sum(cast(JobCost.flops, Float)),
                       *_generated())
        .select_from(BudgetPoint).join(Job, col(Job.id) == BudgetPoint.job_id)
        .outerjoin(JobCost, col(JobCost.job_id) == BudgetPoint.job_id)
        .where(col(Job.batch_id).in_(batch_ids))
        .group_by(col(Job.batch_id), level, col(BudgetPoint.n))
    )
    return [_row(r) for r in session.exec(query)]  # type: ignore[call-overload]


def rescore_curves(*, session: Session, rescore_ids: Sequence[uuid.UUID]) -> list[CurveRow]:
    """As batch_curves, the rescore's verifier cost added to the job's own."""
    level = job_level()
    tokens = job_tokens() + func.coalesce(RescoreCost.verifier_tokens, 0)
    flops = cast(JobCost.flops, Float) + func.coalesce(RescoreCost.flops, 0.0)
    query = (
        select_columns(col(RescorePoint.rescore_id), level, col(RescorePoint.n),
                       *_counts(RescorePoint), func.sum(tokens), func.sum(flops),
                       *_generated())
        .select_from(RescorePoint).join(Job, col(Job.id) == RescorePoint.job_id)
        .outerjoin(JobCost, col(JobCost.job_id) == RescorePoint.job_id)
        .outerjoin(RescoreCost, (col(RescoreCost.rescore_id) == RescorePoint.rescore_id)
                   & (col(RescoreCost.job_id) == RescorePoint.job_id))
        .where(col(RescorePoint.rescore_id).in_(rescore_ids))
        .group_by(col(RescorePoint.rescore_id), level, col(RescorePoint.n))
    )
    return [_row(r) for r in session.exec(query)]  # type: ignore[call-overload]


def _row(values: Any) -> CurveRow:
    source, level, n, problems, graded, correct, tokens, flops, generated, thinking = values
    return CurveRow(source, None if level is None else str(level), n, problems, graded,
                    int(correct or 0), float(tokens or 0), float(flops or 0),
                    float(generated or 0), float(thinking or 0))


def rescores_of(*, session: Session, batch_ids: Sequence[uuid.UUID]) -> list[Rescore]:
    query = (select(Rescore).where(col(Rescore.batch_id).in_(batch_ids))
             .order_by(col(Rescore.created_at)))
    return list(session.exec(query))


def recent_batches(*, session: Session, limit: int = 20) -> list[Batch]:
    """Every owner's batches, newest first: a local database (`ttcq run`) is one user's."""
    query = select(Batch).order_by(col(Batch.created_at).desc()).limit(limit)
    return list(session.exec(query))


def job_outcome(*, session: Session, job_id: uuid.UUID) -> tuple[bool | None, int]:
    """(correct?, tokens processed) of one finished job, for live progress."""
    tokens = func.coalesce(job_tokens(), 0)
    query = (select_columns(col(Job.correct), tokens)
             .outerjoin(JobCost, col(JobCost.job_id) == Job.id).where(col(Job.id) == job_id))
    correct, used = session.exec(query).one()  # type: ignore[call-overload]
    return correct, int(used)
