"""/v1 reads that look into one of the caller's batches or jobs: its problems (filtered,
sorted, paged), failed jobs with reasons, cost, and a job's search tree with each node's
text on demand. The web console is drawn from these; so can any other client be."""

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from ttcq.api.deps import OwnerDep, SessionDep
from ttcq.api.owned import owned_batch, owned_job
from ttcq.api.schemas import CandidatePublic, CostPublic, JobPublic, TraceNodePublic
from ttcq.api.schemas_browse import (
    BatchCost,
    BatchRef,
    FailedJob,
    JobTree,
    ProblemPage,
    ProblemRow,
    SameProblemJob,
    TreeNode,
)
from ttcq.db import browse, queries_api, results, trees
from ttcq.db.browse import Outcome, ProblemSort
from ttcq.db.models import Batch

router = APIRouter(prefix="/v1")


@router.get("/batches/{batch_id}/problems", tags=["browse"])
def batch_problems(
    batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep,
    outcome: Annotated[Outcome | None, Query(description="only these jobs")] = None,
    level: Annotated[str | None, Query(max_length=64, description="only this level")] = None,
    sort: Annotated[ProblemSort, Query(description="line, tokens or -tokens")] = "line",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ProblemPage:
    """A page of the batch's problems with each job's state, answer, grade and tokens."""
    batch = owned_batch(session, batch_id, owner)
    found = browse.problem_rows(session=session, batch_id=batch.id, outcome=outcome,
                                level=level, sort=sort, offset=offset, limit=limit)
    return ProblemPage(total=found.total, offset=offset, limit=limit,
                       levels=browse.batch_levels(session=session, batch_id=batch.id),
                       items=[ProblemRow.model_validate(row) for row in found.rows])


@router.get("/batches/{batch_id}/failures", tags=["browse"])
def batch_failures(
    batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[FailedJob]:
    """The batch's failed jobs in dataset order, each with its reason and last error."""
    batch = owned_batch(session, batch_id, owner)
    rows = browse.failed_jobs(session=session, batch_id=batch.id, limit=limit)
    return [FailedJob.model_validate(row) for row in rows]


@router.get("/batches/{batch_id}/cost", tags=["browse"])
def batch_cost(batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> BatchCost:
    """Tokens (prompt, cached, completion, verifier), cache-hit rate and tokens per
    correct answer, summed by the database over the batch's jobs."""
    batch = owned_batch(session, batch_id, owner)
    return BatchCost.of(browse.batch_cost(session=session, batch_id=batch.id))


@router.get("/jobs/{job_id}/tree", tags=["browse"])
def job_tree(job_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> JobTree:
    """The job's search tree without node texts, its candidates, and the path from the
    root to the chosen candidate."""
    job = owned_job(session, job_id, owner)
    batch = session.get(Batch, job.batch_id)
    assert batch is not None
    nodes = trees.tree_nodes(session=session, job_id=job.id)
    candidates = results.job_candidates(session=session, job_id=job.id)
    chosen = next((c.leaf_node_id for c in candidates if c.selected), None)
    cost = queries_api.job_cost(session=session, job_id=job.id)
    return JobTree(
        job=JobPublic.model_validate(job, from_attributes=True),
        batch=BatchRef(id=batch.id, name=batch.name, strategy=batch.strategy),
        cost=CostPublic.model_validate(cost, from_attributes=True) if cost else None,
        candidates=[CandidatePublic.model_validate(c, from_attributes=True)
                    for c in candidates],
        nodes=[TreeNode.model_validate(node) for node in nodes],
        chosen_path=[] if chosen is None else trees.path_to(nodes, chosen),
    )


@router.get("/jobs/{job_id}/same-problem", tags=["browse"])
def same_problem(
    job_id: uuid.UUID, session: SessionDep, owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = browse.SAME_PROBLEM_LIMIT,
) -> list[SameProblemJob]:
    """The caller's other jobs of this job's problem (the same line and text, so the same
    dataset submitted again, e.g. under another strategy), newest batch first."""
    job = owned_job(session, job_id, owner)
    rows = browse.same_problem_jobs(session=session, job=job, owner=owner, limit=limit)
    return [SameProblemJob.model_validate(row) for row in rows]


@router.get("/jobs/{job_id}/nodes/{node_id}", tags=["browse"])
def job_node(job_id: uuid.UUID, node_id: int, session: SessionDep, owner: OwnerDep
             ) -> TraceNodePublic:
    """One node of the job's search tree, with its whole text."""
    job = owned_job(session, job_id, owner)
    node = trees.trace_node(session=session, job_id=job.id, node_id=node_id)
    if node is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such node")
    return TraceNodePublic.model_validate(node, from_attributes=True)
