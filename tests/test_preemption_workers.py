"""Preemption of real worker processes (`python -m lab.double_worker`: a Celery
thread-pool worker whose engine is a latency-bound TEST DOUBLE), with real Redis and
Postgres: a poison job among healthy ones through repeated whole-worker kills, with the
default attempts; SIGTERM and `ttcq worker --drain` hand jobs back at once and exit."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from lab.double_worker import POISON
from lab.ground_truth.task import make_dataset
from tests.utils.jobs import job_of, stored_tokens, wait_for
from ttcq.db.attempts import attempt_history
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Job, JobCheckpoint, JobCost, JobState
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.drain import drain_workers
from ttcq.worker.queue import enqueue_jobs, pending_messages
from ttcq.worker.search.config import make_config
from ttcq.worker.service import SessionFactory

pytestmark = [pytest.mark.servers, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[1]
BEAM = {"strategy": "beam_search", "n": 4, "beam_width": 2, "verifier": "self_judge"}
Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Spawn]:
    """Starts double workers; every one left is killed at teardown. Only the lease and the
    reaper are quickened (so a dead worker's jobs come back in seconds): attempts and
    everything else keep their defaults."""
    env = {**os.environ, "TTCQ_DATABASE_URL": db_url, "TTCQ_REDIS_URL": redis_url,
           "TTCQ_LEASE_SECONDS": "5", "TTCQ_REAPER_INTERVAL_SECONDS": "1"}
    env.pop("TTCQ_MAX_ATTEMPTS", None)
    started: list[subprocess.Popen[bytes]] = []

    def start(concurrency: int = 32, latency: float = 0.2) -> subprocess.Popen[bytes]:
        with (tmp_path / f"worker{len(started)}.log").open("wb") as out:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "lab.double_worker", "--concurrency",
                 str(concurrency), "--latency", str(latency)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _batch(sessions: SessionFactory, problems: list[str], golds: list[str],
           db_url: str, redis_url: str) -> list[uuid.UUID]:
    rows = [ProblemIn(line=i + 1, problem=p, gold=g)
            for i, (p, g) in enumerate(zip(problems, golds, strict=True))]
    with sessions() as session:
        _, ids = create_batch(session=session, owner="tester", problems=rows,
                              config=make_config(**BEAM).model_dump())
    app = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, ids)
    app.close()
    return ids


def _states(sessions: SessionFactory, ids: list[uuid.UUID]) -> dict[str, int]:
    with sessions() as session:
        rows = session.exec(select(Job.state, func.count()).where(col(Job.id).in_(ids))
                            .group_by(Job.state)).all()
    return {str(state): int(count) for state, count in rows}


def _final(sessions: SessionFactory, ids: list[uuid.UUID]) -> bool:
    states = _states(sessions, ids)
    return states.get("succeeded", 0) + states.get("failed", 0) == len(ids)


def _stored_once(sessions: SessionFactory, ids: list[uuid.UUID]) -> None:
    """One cost row per job, and its trace and cost from the same single stored run."""
    with sessions() as session:
        costs = session.exec(select(JobCost.job_id).where(col(JobCost.job_id).in_(ids))).all()
        assert sorted(costs) == sorted(ids)
        for job_id in ids:
            in_cost, in_trace = stored_tokens(session, job_id)
            assert in_cost[0] == in_trace[0] and in_cost[2] == in_trace[2]


def test_a_poison_job_fails_alone_and_the_others_survive_repeated_kills(
    sessions: SessionFactory, db_url: str, redis_url: str, spawn: Spawn,
) -> None:
    rows = make_dataset(31, seed=2)
    problems = [r["problem"] for r in rows]
    problems.insert(10, f"{POISON}: this problem crashes the worker that runs it.")
    golds = [r["answer"] for r in rows]
    golds.insert(10, "0")
    ids = _batch(sessions, problems, golds, db_url, redis_url)
    poison, healthy = ids[10], ids[:10] + ids[11:]
    worker, kills, restarts = spawn(), 0, 0
    deadline, next_kill = time.monotonic() + 420, time.monotonic() + 8
    while not _final(sessions, ids):
        assert time.monotonic() < deadline, _states(sessions, ids)
        if worker.poll() is not None:  # the poison took it down
            worker, restarts = spawn(), restarts + 1
        elif time.monotonic() > next_kill:  # and so does a preemption, now and then
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            worker, kills, next_kill = spawn(), kills + 1, time.monotonic() + 8
        time.sleep(0.2)
    job = job_of(sessions, poison)
    assert (job.state, job.failure, job.strikes) == (JobState.failed, "worker_lost", 3)
    assert "it crashes or hangs its worker" in (job.error or "")
    assert _states(sessions, healthy) == {"succeeded": 31}
    _stored_once(sessions, healthy)
    # A healthy job running alone that a preemption kills before its first checkpoint is
    # charged like the poison (the blame rule's known limit, docs/operations.md): rare, and
    # never enough to fail it.
    strikes = [job_of(sessions, j).strikes for j in healthy]
    assert sum(strikes) <= 2 and max(strikes) <= 1, strikes
    assert restarts >= 5 and kills >= 1  # the poison's losses, and others on top


def test_sigterm_hands_every_job_back_at_its_next_step_and_the_worker_exits(
    sessions: SessionFactory, db_url: str, redis_url: str, spawn: Spawn,
) -> None:
    rows = make_dataset(16, seed=3)
    ids = _batch(sessions, [r["problem"] for r in rows], [r["answer"] for r in rows],
                 db_url, redis_url)
    first = spawn(concurrency=16, latency=0.4)

    def checkpointed() -> bool:
        with sessions() as session:
            return session.exec(select(func.count(func.distinct(JobCheckpoint.job_id)))).one() >= 4

    wait_for(checkpointed, 120, "searches to checkpoint")
    start = time.monotonic()
    os.kill(first.pid, signal.SIGTERM)  # the worker's own process, as a spot notice is
    first.wait(timeout=60)
    exit_seconds = time.monotonic() - start
    assert exit_seconds < 15  # each engine call takes 0.4 s: at most one in flight each
    states = _states(sessions, ids)
    assert states.get("running", 0) == 0  # back at once, not after a lease expiry
    queued = [j for j in ids if job_of(sessions, j).state == JobState.queued]
    assert queued
    app = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    assert pending_messages(app, "ttcq") >= len(queued)  # each has its message again
    app.close()
    with sessions() as session:
        histories = [attempt_history(session=session, job_id=j) for j in queued]
    assert all([(a.outcome, a.charge) for a in h] == [("yielded", "none")] for h in histories)
    spawn(concurrency=16, latency=0.05)
    wait_for(lambda: _final(sessions, ids), 180, "the jobs to finish")
    assert _states(sessions, ids) == {"succeeded": 16}
    _stored_once(sessions, ids)
    with sessions() as session:
        costs = session.exec(select(JobCost).where(col(JobCost.job_id).in_(queued))).all()
    assert sum(c.resumed_calls for c in costs) > 0  # they went on from their checkpoints
    assert all(c.wasted_tokens == 0 for c in costs)  # and a drain loses nothing


def test_ttcq_worker_drain_stops_a_named_worker(
    db_url: str, redis_url: str, spawn: Spawn,
) -> None:
    worker = spawn(concurrency=4)
    name = f"ttcq{worker.pid}@{os.uname().nodename}"
    settings = Settings(database_url=db_url, redis_url=redis_url)
    app = make_celery(settings)
    wait_for(lambda: bool(app.control.ping(destination=[name], timeout=0.5)), 60,
             "the worker to answer")
    app.close()
    lines = list(drain_workers([name], settings, wait=60))
    assert lines == [f"draining {name}", "drained: their jobs are back in the queue"]
    assert worker.wait(timeout=30) == 0
