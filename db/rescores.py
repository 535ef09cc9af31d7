"""Rescores: read a batch's stored candidates (and the step texts under them) page by page,
and store what a rescore chose, in the caller's transaction."""

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from ttcq.db.bulk import insert_ignoring_conflicts
from ttcq.db.models import (
    Candidate,
    Job,
    JobState,
    Rescore,
    RescoreCandidate,
    RescoreCost,
    RescorePoint,
    TraceNode,
)

PAGE = 500  # jobs read per round of queries
# Walking up from a candidate's leaf, these node kinds end the steps a verifier is shown:
# the prompt, and a self-refine critique (a revision is judged on its own steps).
PATH_ENDS = ("prompt", "critique")


@dataclass
class StoredJob:
    job_id: uuid.UUID
    problem: str
    candidates: list[Candidate]


def create_rescore(
    *, session: Session, batch_id: uuid.UUID, aggregation: str, selection: str,
    verifier: str | None,
) -> Rescore:
    """A rescore row, added to the session (committed with its results)."""
    rescore = Rescore(batch_id=batch_id, aggregation=aggregation, selection=selection,
                      verifier=verifier)
    session.add(rescore)
    session.flush()
    return rescore


def solved_jobs(*, session: Session, batch_id: uuid.UUID) -> Iterator[list[StoredJob]]:
    """The batch's succeeded jobs with their candidates, a page at a time, in line order."""
    after = 0
    while True:
        jobs = list(session.exec(
            select(Job.id, Job.problem, Job.line)
            .where(Job.batch_id == batch_id, Job.state == JobState.succeeded,
                   col(Job.line) > after)
            .order_by(col(Job.line)).limit(PAGE)
        ))
        if not jobs:
            return
        by_job: dict[uuid.UUID, list[Candidate]] = defaultdict(list)
        query = (select(Candidate).where(col(Candidate.job_id).in_([j[0] for j in jobs]))
                 .order_by(col(Candidate.job_id), col(Candidate.idx)))
        for candidate in session.exec(query):
            by_job[candidate.job_id].append(candidate)
        yield [StoredJob(job_id, problem, by_job[job_id]) for job_id, problem, _ in jobs]
        after = jobs[-1][2]


def step_paths(
    *, session: Session, job_id: uuid.UUID, leaves: Sequence[int]
) -> dict[int, list[tuple[int, str]]]:
    """For each leaf node, the (node id, text) of the steps above it, top down."""
    rows = session.exec(
        select(TraceNode.node_id, TraceNode.parent_id, TraceNode.kind, TraceNode.text)
        .where(TraceNode.job_id == job_id)
    )
    nodes = {node_id: (parent, kind, text) for node_id, parent, kind, text in rows}
    paths = {}
    for leaf in leaves:
        path: list[tuple[int, str]] = []
        current: int | None = leaf
        while current is not None and nodes[current][1] not in PATH_ENDS:
            path.append((current, nodes[current][2]))
            current = nodes[current][0]
        paths[leaf] = path[::-1]
    return paths


def store_rescored(
    *, session: Session, rescore_id: uuid.UUID, points: Sequence[dict[str, Any]],
    candidates: Sequence[dict[str, Any]], costs: Sequence[dict[str, Any]],
) -> None:
    """One page of a rescore's rows (keys as the tables' columns, rescore_id added)."""
    tables: list[tuple[Any, Sequence[dict[str, Any]]]] = [
        (RescorePoint, points), (RescoreCandidate, candidates), (RescoreCost, costs)]
    for model, rows in tables:
        insert_ignoring_conflicts(
            session, model.__table__, [{"rescore_id": rescore_id, **row} for row in rows]
        )

