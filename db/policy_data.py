"""What `ttcq policy fit` reads: per batch, each graded problem's tokens, its budget curve
and the first samples' answers, scores and token confidences (worker.search.policy_fit
fits the policy from them)."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from ttcq.db.models import Batch, BudgetPoint, Candidate, Job, JobCost, JobState


@dataclass
class JobRecord:
    """One graded problem of a batch, keyed by its text."""

    generation_tokens: int  # prompt + completion (cached included)
    verifier_tokens: int
    points: dict[int, bool] = field(default_factory=dict)  # budget n -> correct
    # The first samples: (canonical answer or None, correct, aggregated score or None,
    # token confidence or None).
    samples: list[tuple[str | None, bool, float | None, float | None]] = field(
        default_factory=list)


@dataclass
class BatchRecord:
    name: str
    config: dict[str, Any]
    jobs: dict[str, JobRecord]  # problem text -> its record


def batch_records(
    *, session: Session, batch_ids: Sequence[uuid.UUID], samples: int
) -> list[BatchRecord]:
    """The batches in the order given; a problem is keyed by its text, so batches of one
    dataset line up. Only succeeded jobs with a graded final answer are read."""
    out = []
    for batch_id in batch_ids:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise LookupError(f"no batch {batch_id}")
        out.append(BatchRecord(batch.name or str(batch_id), dict(batch.config),
                               _jobs(session, batch_id, samples)))
    return out


def _jobs(session: Session, batch_id: uuid.UUID, samples: int) -> dict[str, JobRecord]:
    graded = (col(Job.batch_id) == batch_id, col(Job.state) == JobState.succeeded,
              col(Job.correct).is_not(None))
    generation: Any = col(JobCost.prompt_tokens) + col(JobCost.completion_tokens)
    query = (select_columns(col(Job.id), col(Job.problem), generation,
                            col(JobCost.verifier_tokens))
             .join(JobCost, col(JobCost.job_id) == Job.id).where(*graded))
    jobs = {job_id: (problem, JobRecord(int(gen), int(ver)))
            for job_id, problem, gen, ver in session.exec(query)}  # type: ignore[call-overload]
    points = (select_columns(col(BudgetPoint.job_id), col(BudgetPoint.n),
                             col(BudgetPoint.correct))
              .join(Job, col(Job.id) == BudgetPoint.job_id).where(*graded))
    for job_id, n, correct in session.exec(points):  # type: ignore[call-overload]
        jobs[job_id][1].points[n] = bool(correct)
    first = (select_columns(col(Candidate.job_id), col(Candidate.canonical),
                            col(Candidate.finish), col(Candidate.correct),
                            col(Candidate.score), col(Candidate.confidence))
             .join(Job, col(Job.id) == Candidate.job_id)
             .where(*graded, col(Candidate.idx) < samples)
             .order_by(col(Candidate.job_id), col(Candidate.idx)))
    rows = session.exec(first)  # type: ignore[call-overload]
    for job_id, canonical, finish, correct, score, confidence in rows:
        stopped = finish == "stop"
        # A cut-off sample keeps its confidence: the probe averages over all its samples.
        jobs[job_id][1].samples.append((canonical if stopped else None, bool(correct),
                                        score if stopped else None, confidence))
    return dict(jobs.values())


def job_outcomes(*, session: Session, batch_id: uuid.UUID) -> dict[str, tuple[bool, int]]:
    """Problem text -> (final answer correct?, tokens) of a batch's graded jobs."""
    tokens: Any = (col(JobCost.prompt_tokens) + col(JobCost.completion_tokens)
                   + col(JobCost.verifier_tokens))
    query = (select_columns(col(Job.problem), col(Job.correct), tokens)
             .join(JobCost, col(JobCost.job_id) == Job.id)
             .where(col(Job.batch_id) == batch_id, col(Job.correct).is_not(None)))
    rows = session.exec(query)  # type: ignore[call-overload]
    return {problem: (bool(correct), int(used)) for problem, correct, used in rows}
