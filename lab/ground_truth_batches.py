"""Batches of the ground-truth task (lab.ground_truth), run the way users' batches run:
stored with create_batch, and solved one job at a time by worker.service.process_job (the
path of a Celery worker and of `ttcq run`), with the ground-truth test doubles as the
engine and, through `self_judge`, the verifier. For tests, benchmarks and the README's
report example; load the rows with api.datasets.to_problems, as the API does."""

import uuid
from collections.abc import Sequence
from typing import Any

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.verifier import GroundTruthVerifier
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.worker.search.config import make_config
from ttcq.worker.service import SessionFactory, process_job

OWNER = "local"  # the owner `ttcq run` gives its batches

# Every strategy, and the budgets at which its curve is checked against the references
# (tests/test_ground_truth_stats.py, -m lab.agreement).
JUDGED = {"verifier": "self_judge"}
RUNS: dict[str, dict[str, Any]] = {
    "majority": {"strategy": "majority", "n": 16, "verifier": "none"},
    "best_of_n": {"strategy": "best_of_n", "n": 16, **JUDGED},
    "weighted_best_of_n": {"strategy": "weighted_best_of_n", "n": 16, **JUDGED},
    "beam_search_4": {"strategy": "beam_search", "n": 4, "beam_width": 4, **JUDGED},
    "beam_search_16": {"strategy": "beam_search", "n": 16, "beam_width": 4, **JUDGED},
    "dvts": {"strategy": "dvts", "n": 16, "beam_width": 4, **JUDGED},
    # No lookahead given: the default (one greedy step) is what the reference assumes.
    "lookahead": {"strategy": "lookahead", "n": 8, "beam_width": 4, **JUDGED},
    "self_refine": {"strategy": "self_refine", "rounds": 3, **JUDGED},
}
BUDGETS = {
    "majority": [1, 2, 4, 8, 16], "best_of_n": [1, 2, 4, 8, 16],
    "weighted_best_of_n": [1, 2, 4, 8, 16], "beam_search_4": [4], "beam_search_16": [16],
    "dvts": [4, 8, 16], "lookahead": [8], "self_refine": [1, 2, 4],
}


def submit(sessions: SessionFactory, problems: Sequence[ProblemIn], owner: str = OWNER,
           **config: Any) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Store a batch; returns its id and its job ids in line order."""
    with sessions() as session:
        batch, job_ids = create_batch(
            session=session, owner=owner, problems=problems, name=config.get("strategy", ""),
            config=make_config(**config).model_dump(mode="json"),
        )
    return batch.id, job_ids


def solve(sessions: SessionFactory, job_ids: Sequence[uuid.UUID], quality: float) -> None:
    """Solve the jobs with the ground-truth engine, its self-judge of this quality."""
    engine = GroundTruthEngine(GroundTruthVerifier(quality))
    for job_id in job_ids:
        outcome = process_job(sessions=sessions, job_id=job_id, engine=engine,
                              worker_name="ground-truth", lease_seconds=60, max_attempts=1)
        if outcome != "succeeded":
            raise RuntimeError(f"ground-truth job {job_id}: {outcome}")


def run_batch(sessions: SessionFactory, problems: Sequence[ProblemIn], *, quality: float,
              owner: str = OWNER, **config: Any) -> uuid.UUID:
    """Submit and solve a batch; returns its id."""
    batch_id, job_ids = submit(sessions, problems, owner, **config)
    solve(sessions, job_ids, quality)
    return batch_id
