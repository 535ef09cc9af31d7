"""What checkpoints cost: beam search jobs (N=16, M=4, the ground-truth engine, which
answers instantly, so that only ttcq's own work is timed) run through process_job into
Postgres, once as they run (a checkpoint saved at every step boundary) and once with the
save left out (the baseline), alternating, in the same run.

    .venv/bin/python -m bench.checkpoint_cost [--jobs 200]

Reports the Postgres writes and bytes per step and the time a save adds per step and per
job. Writes bench/results/checkpoint_cost.json."""

import argparse
import json
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, func, select

from bench.common import bench_database, save_results
from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import JobCheckpoint, JobCost
from ttcq.db.session import get_engine
from ttcq.worker.search.config import make_config
from ttcq.worker.service import Attempt, process_job

CONFIG = {"strategy": "beam_search", "n": 16, "beam_width": 4, "verifier": "self_judge"}


class Counted:
    """Attempt._save, timed."""

    def __init__(self) -> None:
        self.saves, self.seconds = 0, 0.0
        self.original = Attempt._save

    def method(self) -> Any:
        def save(attempt: Attempt, *args: Any) -> None:
            start = time.perf_counter()
            self.original(attempt, *args)
            self.seconds += time.perf_counter() - start
            self.saves += 1
        return save


def jobs(db_url: str, count: int, seed: int) -> list[uuid.UUID]:
    rows = [ProblemIn(i + 1, r["problem"], r["answer"])
            for i, r in enumerate(make_dataset(count, seed=seed))]
    with Session(get_engine(db_url)) as session:
        _, ids = create_batch(session=session, owner="bench", problems=rows,
                              config=make_config(**CONFIG).model_dump())
    return ids


def solve(db_url: str, ids: list[uuid.UUID]) -> float:
    """Seconds per job, solving them one after another in this process."""

    def sessions() -> Session:
        return Session(get_engine(db_url), expire_on_commit=False)

    engine = GroundTruthEngine()
    start = time.perf_counter()
    for job_id in ids:
        outcome = process_job(sessions=sessions, job_id=job_id, engine=engine,
                              worker_name="bench", lease_seconds=60, max_attempts=3)
        assert outcome == "succeeded", outcome
    return (time.perf_counter() - start) / len(ids)


def measure(db_url: str, count: int, rounds: int) -> dict[str, Any]:
    counted = Counted()
    with_saves, without = [], []
    stored_bytes = saved_rows = 0
    for r in range(rounds):
        Attempt._save = counted.method()  # type: ignore[method-assign]
        batch = jobs(db_url, count, seed=2 * r)
        with_saves.append(solve(db_url, batch))
        # A stored result drops its checkpoint: read the bytes from the statistics.
        with Session(get_engine(db_url)) as session:
            session.exec(text("SELECT pg_stat_force_next_flush()"))  # type: ignore[call-overload]
        Attempt._save = lambda *_: None  # type: ignore[method-assign, assignment]
        without.append(solve(db_url, jobs(db_url, count, seed=2 * r)))
    Attempt._save = counted.original  # type: ignore[method-assign]
    with Session(get_engine(db_url)) as session:
        calls = session.exec(select(func.sum(JobCost.engine_calls + JobCost.verifier_calls))
                             ).one()
        saved_rows = int(session.exec(text(  # type: ignore[call-overload]
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'job_checkpoint'"
        )).one()[0])
        left = session.exec(select(func.count()).select_from(JobCheckpoint)).one()
        stored_bytes = _checkpoint_bytes(count)
    per_job_with, per_job_without = statistics.median(with_saves), statistics.median(without)
    steps = counted.saves / (count * rounds)
    return {
        "jobs": count * rounds, "strategy": CONFIG["strategy"], "n": CONFIG["n"],
        "calls_per_job": round(int(calls or 0) / (2 * count * rounds), 1),
        "saves_per_job": round(steps, 1),
        "postgres_writes_per_save": round(saved_rows / max(counted.saves, 1), 2),
        "checkpoint_rows_left_after_success": int(left),
        "bytes_per_save": stored_bytes,
        "ms_per_save": round(1000 * counted.seconds / max(counted.saves, 1), 3),
        "ms_per_job_with_checkpoints": round(1000 * per_job_with, 2),
        "ms_per_job_without": round(1000 * per_job_without, 2),
        "with_over_without": round(per_job_with / per_job_without, 3),
    }


def _checkpoint_bytes(count: int) -> int:
    """Mean stored bytes of one save: a job run with its checkpoint kept (not stored)."""
    from ttcq.worker.journal import Journal, encode_calls
    from ttcq.worker.search.registry import run_search
    from ttcq.worker.search.types import Problem
    from ttcq.worker.verifiers.factory import make_verifier

    sizes = []
    for row in make_dataset(count, seed=99):
        journal = Journal(save=lambda calls, *_: sizes.append(len(encode_calls(calls))))
        engine = journal.engine(GroundTruthEngine())
        config = make_config(**CONFIG)
        run_search(Problem(row["problem"], row["answer"]), config, engine,
                   journal.verifier(make_verifier(config.verifier, engine)))
    return round(statistics.mean(sizes))


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with bench_database("ttcq_bench_checkpoint") as db_url:
        result = measure(db_url, args.jobs, args.rounds)
    save_results("checkpoint_cost", result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
