"""Label batches (ttcq label): a batch whose jobs label the candidates of a stored batch's
jobs, the solutions a label job reads, and the labels read back for export and reports."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from sqlalchemy import and_, case, func, insert
from sqlalchemy import select as sql_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from ttcq.db.batches import INSERT_CHUNK
from ttcq.db.models import Batch, Candidate, Job, JobCost, JobState, StepLabel, TraceNode


class LabelSourceError(ValueError):
    """A batch whose candidates cannot be labelled; the message says why."""


def create_label_batch(
    *, session: Session, source: Batch, owner: str, config: dict[str, Any], name: str = "",
    priority: int = 0,
) -> tuple[Batch, list[uuid.UUID]]:
    """A batch with one queued job per job of `source` that succeeded, has a gold answer
    and a finished candidate: each labels that job's candidates (its problem, gold and
    dataset line copied). All or nothing; raises LabelSourceError before storing if no
    job of the source can be labelled."""
    counts = _source_counts(session, source.id)
    if not counts["with_gold"]:
        raise LabelSourceError(f"batch {source.id} has no gold answers: labels grade "
                               "rollouts against them (submit the dataset with its answers)")
    if not counts["usable"]:
        raise LabelSourceError(f"batch {source.id} has no succeeded job with a gold answer "
                               f"and a finished candidate yet ({counts['jobs']} jobs, "
                               f"{counts['succeeded']} succeeded)")
    batch = Batch(owner=owner, name=name or f"labels of {source.name or source.id}",
                  model=source.model, strategy=config["strategy"], config=config,
                  priority=priority)
    session.add(batch)
    session.flush()
    job_ids: list[uuid.UUID] = []
    rows = (_label_job(batch.id, job, job_ids) for job in _usable_jobs(session, source.id))
    while chunk := list(islice(rows, INSERT_CHUNK)):
        session.execute(insert(Job), chunk)
    batch.total_jobs = len(job_ids)
    session.commit()
    return batch, job_ids


def _label_job(batch_id: uuid.UUID, source: Any, ids: list[uuid.UUID]) -> dict[str, Any]:
    ids.append(job_id := uuid.uuid4())
    return {"id": job_id, "batch_id": batch_id, "line": source.line,
            "custom_id": source.custom_id, "problem": source.problem, "gold": source.gold,
            "meta": source.meta, "state": JobState.queued, "attempts": 0, "strikes": 0,
            "stalls": 0, "alone": False, "source_job_id": source.id}


def _finished_candidate() -> Any:
    return (select(Candidate.job_id).where(Candidate.job_id == Job.id,
                                           Candidate.finish == "stop").exists())


def _usable_jobs(session: Session, batch_id: uuid.UUID) -> Iterator[Any]:
    columns = [col(Job.id), col(Job.line), col(Job.custom_id), col(Job.problem),
               col(Job.gold), col(Job.meta)]
    query = (sql_select(*columns)
             .where(col(Job.batch_id) == batch_id, col(Job.state) == JobState.succeeded,
                    col(Job.gold).is_not(None), _finished_candidate())
             .order_by(col(Job.line)))
    yield from session.connection().execute(query)


def _source_counts(session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    def count(*where: Any) -> int:
        return session.exec(select(func.count()).select_from(Job)
                            .where(Job.batch_id == batch_id, *where)).one()

    return {"jobs": count(), "succeeded": count(Job.state == JobState.succeeded),
            "with_gold": count(col(Job.gold).is_not(None)),
            "usable": count(Job.state == JobState.succeeded, col(Job.gold).is_not(None),
                            _finished_candidate())}


def source_solutions(*, session: Session, job_id: uuid.UUID, limit: int) -> list[str]:
    """The finished candidates of a stored job, the first `limit` in candidate order: the
    solutions a label job labels (a cut-off candidate is not a solution)."""
    query = (select(Candidate.text).where(Candidate.job_id == job_id,
                                          Candidate.finish == "stop")
             .order_by(col(Candidate.idx)).limit(limit))
    return list(session.exec(query))


@dataclass(frozen=True)
class LabelledSolution:
    """A labelled solution as export needs it: its problem, its steps' texts (up to the
    last labelled one) and their labels."""

    job_id: uuid.UUID
    line: int
    problem: str
    gold: str | None
    candidate: int
    correct: bool | None
    steps: list[str]
    labels: list[StepLabel]
    source_job_id: uuid.UUID | None = None  # the stored job whose candidate this was


EXPORT_PAGE = 500  # jobs read per round of queries when exporting labels


def labelled_solutions(*, session: Session, batch_id: uuid.UUID) -> Iterator[LabelledSolution]:
    """Every labelled solution of a batch, in dataset then candidate order: two queries
    per page of jobs, whatever the batch size."""
    after = 0
    columns = [col(Job.id), col(Job.line), col(Job.problem), col(Job.gold),
               col(Job.source_job_id)]
    while page := session.connection().execute(
        sql_select(*columns)
        .where(col(Job.batch_id) == batch_id, col(Job.state) == JobState.succeeded,
               col(Job.line) > after)
        .order_by(col(Job.line)).limit(EXPORT_PAGE)
    ).all():
        rows = session.exec(
            select(StepLabel, TraceNode.text, Candidate.correct)
            .join(TraceNode, and_(col(TraceNode.job_id) == StepLabel.job_id,
                                  col(TraceNode.node_id) == StepLabel.node_id))
            .join(Candidate, and_(col(Candidate.job_id) == StepLabel.job_id,
                                  col(Candidate.idx) == StepLabel.candidate))
            .where(col(StepLabel.job_id).in_([job_id for job_id, *_ in page]))
            .order_by(col(StepLabel.job_id), col(StepLabel.candidate), col(StepLabel.step))
        ).all()
        solutions: dict[uuid.UUID, list[LabelledSolution]] = {}
        for label, text, correct in rows:
            of_job = solutions.setdefault(label.job_id, [])
            if not of_job or of_job[-1].candidate != label.candidate:
                of_job.append(LabelledSolution(label.job_id, 0, "", None, label.candidate,
                                               correct, [], []))
            of_job[-1].steps.append(text)
            of_job[-1].labels.append(label)
        for job in page:
            for solution in solutions.get(job.id, []):
                yield replace(solution, line=job.line, problem=job.problem, gold=job.gold,
                              source_job_id=job.source_job_id)
        after = page[-1].line


def _count_of(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def label_stats(*, session: Session, batch_id: uuid.UUID) -> dict[str, Any]:
    """A label batch's labels in numbers: steps labelled, share positive, rollouts spent,
    tokens computed per label (cached ones apart), and how often the first wrong step of
    a solution falls at each step index."""
    jobs = select(Job.id).where(Job.batch_id == batch_id)
    labelled = col(StepLabel.job_id).in_(jobs)
    steps, positive, measured, solutions = session.connection().execute(
        sql_select(func.count(), _count_of(col(StepLabel.hard)),
                   _count_of(col(StepLabel.rollouts) > 0), _count_of(col(StepLabel.step) == 0))
        .where(labelled)).one()
    # All rollouts spent, those of omega's probes past the first wrong step included.
    rollouts = session.exec(select(func.count()).select_from(TraceNode).where(
        col(TraceNode.job_id).in_(jobs), TraceNode.kind == "rollout")).one()
    tokens = session.exec(select(func.coalesce(func.sum(
        JobCost.prompt_tokens - JobCost.cached_tokens + JobCost.completion_tokens), 0))
        .where(col(JobCost.job_id).in_(jobs))).one()
    earlier = aliased(StepLabel)
    wrong_before = select(earlier.step).where(
        earlier.job_id == StepLabel.job_id, earlier.candidate == StepLabel.candidate,
        col(earlier.hard).is_(False), earlier.step < StepLabel.step).exists()
    first_wrong = session.exec(
        select(StepLabel.step, func.count())
        .where(labelled, col(StepLabel.hard).is_(False), ~wrong_before)
        .group_by(col(StepLabel.step)).order_by(col(StepLabel.step))).all()
    return {"solutions": solutions, "steps": steps, "positive": positive,
            "share_positive": positive / steps if steps else None,
            "measured_steps": measured, "rollouts": rollouts, "tokens": tokens,
            "tokens_per_label": tokens / steps if steps else None,
            "first_wrong_step": {str(step): count for step, count in first_wrong}}


# A step's Q-value at or above this is labelled good when an MCTS batch is exported.
Q_GOOD = 0.5


def mcts_solutions(*, session: Session, batch_id: uuid.UUID) -> Iterator[LabelledSolution]:
    """An MCTS batch's candidates as labelled solutions: each step's soft label is its
    Q-value (the mean value backed up through it; its own value if never visited), hard =
    Q >= Q_GOOD. A candidate that ends in a rollout ends with the rollout's text, labelled
    by the candidate's grade. As labels rows: rollouts = the step's visits, successes = its
    backed-up value summed (Q x visits, rounded)."""
    jobs = session.exec(select(Job.id, Job.line, Job.problem, Job.gold)
                        .where(Job.batch_id == batch_id, Job.state == JobState.succeeded)
                        .order_by(col(Job.line))).all()
    for job_id, line, problem, gold in jobs:
        nodes = {n.node_id: n for n in session.exec(
            select(TraceNode).where(TraceNode.job_id == job_id))}
        candidates = session.exec(select(Candidate).where(Candidate.job_id == job_id)
                                  .order_by(col(Candidate.idx))).all()
        for candidate in candidates:
            path = _path(nodes, candidate.leaf_node_id)
            labels = [_q_label(job_id, candidate.idx, i, node, candidate.correct)
                      for i, node in enumerate(path)]
            if labels:
                yield LabelledSolution(job_id, line, problem, gold, candidate.idx,
                                       candidate.correct, [n.text for n in path], labels)


def _path(nodes: dict[int, TraceNode], leaf: int) -> list[TraceNode]:
    """Step and rollout nodes from below the prompt down to leaf."""
    out = []
    node: TraceNode | None = nodes[leaf]
    while node is not None and node.kind in ("step", "rollout"):
        out.append(node)
        node = nodes.get(node.parent_id) if node.parent_id is not None else None
    return out[::-1]


def _q_label(job_id: uuid.UUID, candidate: int, step: int, node: TraceNode,
             correct: bool | None) -> StepLabel:
    if node.kind == "rollout" and correct is not None:
        soft = 1.0 if correct else 0.0
    elif node.kind == "rollout":  # no gold to grade it: the value mcts gave it
        soft = node.agg_score or 0.0
    else:
        soft = node.q_value if node.q_value is not None else (node.agg_score or 0.0)
    visits = node.visits or 0
    return StepLabel(job_id=job_id, candidate=candidate, step=step, node_id=node.node_id,
                     method="mcts", rollouts=visits, successes=round(soft * visits),
                     hard=soft >= Q_GOOD, soft=soft)
