"""The new searches stored as users' batches are: ground-truth batches through process_job
into Postgres, their trace (the early-stop note included), cost and curve read back."""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from lab.ground_truth_batches import run_batch, submit
from ttcq.api.datasets import Limits, to_problems
from ttcq.db.ledger import BatchSpend, batch_spend
from ttcq.db.models import BudgetPoint, Job, JobCost, TraceNode
from ttcq.worker.service import SessionFactory, process_job

ROWS = make_dataset(12, seed=9)
CONFIGS: dict[str, dict[str, Any]] = {
    "particle_gibbs": {"strategy": "particle_filtering", "n": 4, "pf_rounds": 2,
                       "verifier": "self_judge"},
    "rebase": {"strategy": "rebase", "n": 4, "verifier": "self_judge"},
    "majority_early": {"strategy": "majority", "n": 8, "verifier": "none", "early_stop": 0.75,
                       "early_stop_round": 2, "early_stop_min": 4},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_stored_cost_trace_and_curve(sessions: SessionFactory, name: str) -> None:
    problems = list(to_problems(enumerate(ROWS, start=1), limits=Limits(10_000, len(ROWS))))
    batch_id = run_batch(sessions, problems, quality=2.0, **CONFIGS[name])
    with sessions() as session:
        jobs = session.exec(select(Job).where(col(Job.batch_id) == batch_id)).all()
        assert {j.state for j in jobs} == {"succeeded"}
        stopped = 0
        for job in jobs:
            nodes = session.exec(select(TraceNode).where(col(TraceNode.job_id) == job.id)).all()
            cost = session.get(JobCost, job.id)
            assert cost is not None
            assert sum(n.completion_tokens for n in nodes) == cost.completion_tokens > 0
            assert sum(n.prompt_tokens for n in nodes) == cost.prompt_tokens
            points = session.exec(
                select(BudgetPoint.n).where(col(BudgetPoint.job_id) == job.id)).all()
            kinds = Counter(n.kind for n in nodes)
            if name == "majority_early":
                stopped += kinds["stop"]
                assert max(points) <= 8 and (kinds["stop"] == 1) == (max(points) < 8)
            elif name == "particle_gibbs":
                assert sorted(points) == [4, 8]
            else:
                assert sorted(points) == [4]
    if name == "majority_early":
        assert 0 < stopped < len(jobs)


def test_the_ledger_reads_what_a_batch_spent_and_has_running(sessions: SessionFactory) -> None:
    """batch_spend: the finished jobs' stored tokens, and the jobs finished, running (not
    the asking one) and in all."""
    problems = list(to_problems(enumerate(ROWS[:4], start=1), limits=Limits(10_000, 4)))
    batch_id = run_batch(sessions, problems, quality=2.0, strategy="majority", n=2,
                         verifier="none")
    with sessions() as session:
        jobs = session.exec(select(Job).where(col(Job.batch_id) == batch_id)
                            .order_by(col(Job.line))).all()
        costs = [session.get(JobCost, j.id) for j in jobs]
        spent = sum(c.prompt_tokens + c.completion_tokens + c.verifier_tokens
                    for c in costs if c is not None)
        # As if the last two were still going: one running, one queued (no cost yet).
        for job, state in zip(jobs[2:], ("running", "queued"), strict=True):
            job.state = state
            session.delete(session.get(JobCost, job.id))
        session.commit()
        kept = sum(c.prompt_tokens + c.completion_tokens for c in costs[:2] if c is not None)
        assert batch_spend(session=session, job_id=jobs[3].id) == BatchSpend(kept, 2, 1, 4)
        assert batch_spend(session=session, job_id=jobs[2].id) == BatchSpend(kept, 2, 0, 4)
    assert spent > kept > 0


POLICY = {"probe": 2, "budget": 4, "probe_tokens": 800.0, "bins": [
    {"min_confidence": 1.0, "n": 0, "share": 0.5, "tokens": 800.0},
    {"min_confidence": 0.0, "strategy": "beam_search", "n": 4, "config": {"beam_width": 2},
     "share": 0.5, "tokens": 8000.0}]}


def budget_run(sessions: SessionFactory, batch_tokens: int) -> tuple[list[str], list[int]]:
    """Two level-5 problems under POLICY and a batch budget: decisions, tokens per job."""
    hard = [row for row in make_dataset(10, seed=9) if row["level"] == 5][:2]
    problems = list(to_problems(enumerate(hard, start=1), limits=Limits(10_000, 2)))
    batch_id = run_batch(sessions, problems, quality=2.0, strategy="compute_optimal",
                         verifier="self_judge", policy=POLICY, n=4, batch_tokens=batch_tokens)
    with sessions() as session:
        jobs = session.exec(select(Job).where(col(Job.batch_id) == batch_id)
                            .order_by(col(Job.line))).all()
        decisions = [session.exec(select(TraceNode.text).where(
            col(TraceNode.job_id) == j.id, col(TraceNode.kind) == "decision")).one()
            for j in jobs]
        costs = [session.get(JobCost, j.id) for j in jobs]
    return decisions, [c.prompt_tokens + c.completion_tokens + c.verifier_tokens
                       for c in costs if c is not None]


def test_a_batch_budget_job_gets_what_the_batch_has_left(sessions: SessionFactory) -> None:
    """The first job has half of 9,000 tokens (n=5 fits 4,500 in expectation); its probe
    settled it, so the second has all the rest, and a larger n."""
    decisions, used = budget_run(sessions, 9000)
    assert decisions[0] == ("bin 1 of 2: agreement 1.00; batch budget: 4500 tokens per "
                            "problem left, n=5 -> settled, the probe's answer stands")
    assert decisions[1].startswith(f"bin 2 of 2: agreement 0.50; batch budget: "
                                   f"{9000 - used[0]} tokens per problem left, n=9 -> ")


def test_a_spent_batch_budget_leaves_the_probe_only(sessions: SessionFactory) -> None:
    """Below what n=1 is expected to cost (2,600 tokens), a job runs its probe and stops."""
    decisions, _ = budget_run(sessions, 3000)
    assert decisions[1] == ("bin 2 of 2: agreement 0.50; batch budget: 2151 tokens per "
                            "problem left, the probe only -> settled, the probe's answer stands")


def test_a_database_away_when_the_ledger_is_read_retries_the_job(
    sessions: SessionFactory,
) -> None:
    """The ledger's read failing is the database being away, not a bad job: the task is
    retried (the error goes up) and the job is not failed."""
    hard = [row for row in make_dataset(10, seed=9) if row["level"] == 5][:1]
    problems = list(to_problems(enumerate(hard, start=1), limits=Limits(10_000, 1)))
    _, [job_id] = submit(sessions, problems, strategy="compute_optimal",
                         verifier="self_judge", policy=POLICY, n=4, batch_tokens=9000)
    calls = []

    @contextmanager
    def flaky() -> Iterator[Session]:
        calls.append(1)
        if len(calls) == 2:  # the claim is the first session, the ledger the second
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        with sessions() as session:
            yield session

    with pytest.raises(OperationalError):
        process_job(sessions=flaky, job_id=job_id, engine=GroundTruthEngine(),
                    worker_name="t", lease_seconds=60, max_attempts=3)
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "running" and job.error is None
