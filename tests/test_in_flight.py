"""Many problems in flight per worker on the real SGLang server: a thread-pool worker runs
its searches at once, stores each exactly once with exact costs, stops a search at its time
limit, and loses nothing when killed with all of them in flight."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func
from sqlmodel import col, select

from lab.recording import SGLangRecorder
from lab.servers import RunningServer
from tests.utils.jobs import job_of, wait_for_state
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Candidate, Job, JobCost, JobState
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.main import create_worker_app, pool_for
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.service import SessionFactory, process_job

# A real server starts within the first test that needs it: minutes on a loaded machine.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"strategy": "best_of_n", "verifier": "checker", "n": 2, "max_tokens": 48}


def arithmetic_batch(sessions: SessionFactory, count: int, **config: Any) -> list[uuid.UUID]:
    rows = [ProblemIn(line=i + 1, problem=f"What is {i + 12} + {3 * i + 7}?", gold=str(4 * i + 19))
            for i in range(count)]
    with sessions() as session:
        _, ids = create_batch(session=session, owner="tester", problems=rows,
                              config={**CONFIG, **config})
    return ids


def running_peak(sessions: SessionFactory, job_ids: list[uuid.UUID],
                 until: Callable[[], bool], timeout: float) -> int:
    """The most jobs seen running at once while waiting for `until`."""
    peak, deadline = 0, time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        with sessions() as session:
            running = session.exec(select(func.count()).select_from(Job).where(
                col(Job.id).in_(job_ids), Job.state == JobState.running)).one()
        peak = max(peak, running)
        time.sleep(0.05)
    return peak


def done(sessions: SessionFactory, job_ids: list[uuid.UUID]) -> Callable[[], bool]:
    def check() -> bool:
        with sessions() as session:
            return session.exec(select(func.count()).select_from(Job).where(
                col(Job.id).in_(job_ids), Job.state == JobState.succeeded)).one() == len(job_ids)
    return check


def test_a_served_engine_worker_runs_searches_in_threads() -> None:
    assert pool_for(Settings(engine="sglang", engine_url="http://x"), None) == ("threads", 32)
    assert pool_for(Settings(engine="sglang", engine_url="http://x", in_flight=7), None)[1] == 7
    assert pool_for(Settings(), None) == ("prefork", 1)


def test_a_thread_pool_worker_keeps_many_problems_in_flight(
    sessions: SessionFactory, db_url: str, redis_url: str, sglang: RunningServer,
) -> None:
    client = SGLangRecorder(sglang.url)
    engine = SGLangEngine(sglang.url, server=client)
    settings = Settings(database_url=db_url, redis_url=redis_url, engine="sglang",
                        engine_url=sglang.url, lease_seconds=10, task_time_limit=120,
                        visibility_timeout=300)
    app = create_worker_app(settings, engine_factory=lambda: engine)
    job_ids = arithmetic_batch(sessions, 12)
    with start_worker(app, perform_ping_check=False, pool="threads", concurrency=8,
                      shutdown_timeout=60):
        enqueue_jobs(app, job_ids)
        peak = running_peak(sessions, job_ids, done(sessions, job_ids), timeout=240)
    app.close()
    engine.close()
    assert peak >= 4  # searches overlapped; the server saw their branches together
    with sessions() as session:
        costs = session.exec(select(JobCost).where(col(JobCost.job_id).in_(job_ids))).all()
    assert len(costs) == 12
    stored = tuple(sum(getattr(c, k) for c in costs)
                   for k in ("prompt_tokens", "cached_tokens", "completion_tokens"))
    assert stored == client.reported()  # per-job meters add up to what the server said


def test_a_search_past_its_time_limit_fails_its_job(
    sessions: SessionFactory, sglang_engine: SGLangEngine,
) -> None:
    [job_id] = arithmetic_batch(sessions, 1)
    # Spent before the first engine call: the search stops there.
    outcome = process_job(sessions=sessions, job_id=job_id, engine=sglang_engine,
                          worker_name="t", lease_seconds=30, max_attempts=1, time_limit=1e-6)
    assert outcome == "failed"
    assert "time limit of 1e-06 s exceeded" in (job_of(sessions, job_id).error or "")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    """Starts `python -m worker.main` processes; every one left is killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (tmp_path / f"worker{len(started)}.log").open("wb") as out:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "ttcq.worker.main", "--concurrency", "8"], cwd=REPO, env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_killing_a_worker_with_many_jobs_in_flight_loses_and_duplicates_nothing(
    sessions: SessionFactory, db_url: str, redis_url: str, sglang: RunningServer,
    spawn: Callable[[dict[str, str]], subprocess.Popen[bytes]],
) -> None:
    env = {**os.environ, "TTCQ_DATABASE_URL": db_url, "TTCQ_REDIS_URL": redis_url,
           "TTCQ_ENGINE": "sglang", "TTCQ_ENGINE_URL": sglang.url, "TTCQ_LEASE_SECONDS": "5",
           "TTCQ_REAPER_INTERVAL_SECONDS": "1", "TTCQ_TASK_TIME_LIMIT": "240",
           "TTCQ_VISIBILITY_TIMEOUT": "300"}
    job_ids = arithmetic_batch(sessions, 16, max_tokens=96)
    app = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, job_ids)
    app.close()
    first = spawn(env)
    running_peak(sessions, job_ids, lambda: _running(sessions, job_ids) >= 4, timeout=300)
    os.killpg(first.pid, signal.SIGKILL)  # every in-flight search dies at once
    first.wait()
    killed = _running(sessions, job_ids)
    second = spawn(env)
    wait_for_state(sessions, job_ids, JobState.succeeded, timeout=500)
    os.killpg(second.pid, signal.SIGTERM)
    second.wait(60)
    with sessions() as session:
        costs = session.exec(select(JobCost.job_id).where(col(JobCost.job_id).in_(job_ids)))
        assert sorted(costs.all()) == sorted(job_ids)  # one cost row each: stored once
        per_job = session.exec(select(Candidate.job_id, func.count()).where(
            col(Candidate.job_id).in_(job_ids)).group_by(Candidate.job_id)).all()
    assert all(count == 2 for _, count in per_job) and len(per_job) == 16
    assert killed >= 4 and sum(job_of(sessions, j).attempts == 2 for j in job_ids) >= killed


def _running(sessions: SessionFactory, job_ids: list[uuid.UUID]) -> int:
    with sessions() as session:
        return session.exec(select(func.count()).select_from(Job).where(
            col(Job.id).in_(job_ids), Job.state == JobState.running)).one()
