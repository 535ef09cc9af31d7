"""Factories and helpers for queue and worker tests: batches, waiting, a recording engine."""

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session, col, func, select

from lab.recording import RecordingEngine
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Candidate, Job, JobCost, JobCostBase, TraceNode
from ttcq.worker.engines.base import Usage
from ttcq.worker.search.config import make_config
from ttcq.worker.search.types import Candidate as SearchCandidate
from ttcq.worker.search.types import SearchResult, Trace
from ttcq.worker.service import SessionFactory

__all__ = ["RecordingEngine"]  # re-exported: the worker tests take it from here

PROBLEMS = (
    ("A robe takes 2 bolts of blue fiber and half that much white fiber. "
     "How many bolts in total does it take?", "3"),
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many "
     "clips in May. How many clips did Natalia sell altogether in April and May?", "72"),
)


def make_batch(
    sessions: SessionFactory, *, problems: int = 1, priority: int = 0, model: str = "",
    **config: Any,
) -> list[uuid.UUID]:
    """A stored batch of the first few PROBLEMS; returns its job ids in line order."""
    values = {"strategy": "majority", "n": 2, "max_tokens": 32, "verifier": "none", **config}
    rows = [
        ProblemIn(line=i + 1, problem=text, gold=gold, custom_id=f"p{i + 1}")
        for i, (text, gold) in enumerate(PROBLEMS[:problems])
    ]
    with sessions() as session:
        _, ids = create_batch(
            session=session, owner="tester", config=make_config(**values).model_dump(),
            problems=rows, priority=priority, model=model,
        )
    return ids


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def job_of(sessions: SessionFactory, job_id: uuid.UUID) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def wait_for_state(
    sessions: SessionFactory, job_ids: Sequence[uuid.UUID], state: str, timeout: float
) -> None:
    def reached() -> bool:
        return all(job_of(sessions, job_id).state == state for job_id in job_ids)

    wait_for(reached, timeout, f"jobs to be {state}")


Tokens = tuple[int, int, int]  # prompt, cached, completion


def stored_tokens(session: Session, job_id: uuid.UUID) -> tuple[Tokens, Tokens]:
    """(tokens in job_cost, tokens summed over trace nodes) of one job."""
    cost = session.get(JobCost, job_id)
    assert cost is not None
    sums = session.exec(
        select(
            func.sum(TraceNode.prompt_tokens), func.sum(TraceNode.cached_tokens),
            func.sum(TraceNode.completion_tokens),
        ).where(TraceNode.job_id == job_id)
    ).one()
    in_cost = (cost.prompt_tokens, cost.cached_tokens, cost.completion_tokens)
    in_trace = (int(sums[0] or 0), int(sums[1] or 0), int(sums[2] or 0))
    return in_cost, in_trace


def count_rows(session: Session, model: Any, job_id: uuid.UUID) -> int:
    """Rows of a per-job table (trace_node, candidate, job_cost …) for one job."""
    query = select(func.count()).select_from(model).where(col(model.job_id) == job_id)
    return session.exec(query).one()


def candidate_count(session: Session, job_id: uuid.UUID) -> int:
    return count_rows(session, Candidate, job_id)


def synthetic_result(nodes: int = 3, n: int = 2) -> SearchResult:
    """A search result built by hand: a chain of nodes under the prompt, n candidates on
    the last ones. Enough to exercise storage without running a model."""
    trace = Trace()
    parent = trace.add(None, "prompt", "problem")
    for i in range(nodes - 1):
        parent = trace.add(parent, "step", f"step {i}", status="finished")
        parent.prompt_tokens, parent.completion_tokens = 10, 5
    candidates = [
        SearchCandidate(index=i, group=i, leaf_id=nodes - 1 - i, text="so \\boxed{3}",
                        finish="stop", answer="3", canonical="3", selected=i == 0)
        for i in range(n)
    ]
    usage = trace.usage()
    return SearchResult("majority", candidates, trace, 0, usage, Usage(),
                        curve={k + 1: 0 for k in range(n)})


def zero_cost() -> JobCostBase:
    return JobCostBase()


def assert_stored_as_reported(sessions: SessionFactory, job_id: uuid.UUID,
                              recorder: Any) -> JobCost:
    """The job's stored tokens are exactly those its server reported: generation in
    job_cost and on the trace nodes, verifier calls in verifier_tokens (prompt and
    completion together) and verifier_cached_tokens. Returns the job's cost row."""
    with sessions() as session:
        cost = session.get(JobCost, job_id)
        assert cost is not None
        in_cost, in_trace = stored_tokens(session, job_id)
    assert in_cost == in_trace == recorder.reported()
    prompt, cached, completion = recorder.reported(logprobs=True)
    assert (cost.verifier_tokens, cost.verifier_cached_tokens) == (prompt + completion, cached)
    return cost
