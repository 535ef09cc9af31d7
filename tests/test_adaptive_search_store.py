"""The new searches stored as users' batches are: ground-truth batches through process_job
into Postgres, their trace (the early-stop note included), cost and curve read back."""

from collections import Counter
from typing import Any

import pytest
from sqlmodel import col, select

from api.datasets import Limits, to_problems
from db.models import BudgetPoint, Job, JobCost, TraceNode
from worker.ground_truth.task import make_dataset
from worker.ground_truth_batches import run_batch
from worker.service import SessionFactory

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
