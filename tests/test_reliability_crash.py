"""Crash test: a worker process group is SIGKILLed mid-search; another worker finishes the
job through the reaper, and the result is stored exactly once."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.utils.jobs import (
    candidate_count,
    count_rows,
    job_of,
    make_batch,
    stored_tokens,
    wait_for_state,
)
from ttcq.db.models import JobCost, JobState
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.service import SessionFactory

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parents[1]
N = 4
Spawn = Callable[[], subprocess.Popen[bytes]]


def _worker_env(db_url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "TTCQ_DATABASE_URL": db_url,
        "TTCQ_REDIS_URL": redis_url,
        # A short lease and a busy reaper, so a dead worker's job comes back within seconds.
        "TTCQ_LEASE_SECONDS": "5",
        "TTCQ_REAPER_INTERVAL_SECONDS": "1",
        "TTCQ_TASK_TIME_LIMIT": "240",
        "TTCQ_VISIBILITY_TIMEOUT": "300",
        "TTCQ_N_CTX": "2048",
        # One thread: llama.cpp spins its threads, which starves everything on a busy CI box.
        "TTCQ_N_THREADS": "1",
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown of the worker's process group; killed if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def spawn_worker(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Spawn]:
    """Starts `python -m worker.main` subprocesses, each in its own process group."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "ttcq.worker.main", "--loglevel", "INFO"],
            cwd=REPO, env=_worker_env(db_url, redis_url), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        started.append(process)
        return process

    yield spawn
    for process in started:
        _stop(process)


def test_a_killed_worker_loses_no_job_and_duplicates_no_result(
    sessions: SessionFactory, db_url: str, redis_url: str, spawn_worker: Spawn
) -> None:
    [job_id] = make_batch(sessions, n=N, max_tokens=96)  # several seconds of search
    app = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, [job_id])
    app.close()
    first = spawn_worker()
    wait_for_state(sessions, [job_id], JobState.running, timeout=90)
    time.sleep(0.2)  # into the search, well before its end (about 400 tokens to go)
    os.killpg(first.pid, signal.SIGKILL)  # the parent and its pool child, with no goodbye
    first.wait()
    spawn_worker()
    wait_for_state(sessions, [job_id], JobState.succeeded, timeout=180)
    assert job_of(sessions, job_id).attempts == 2
    with sessions() as session:
        assert candidate_count(session, job_id) == N
        assert count_rows(session, JobCost, job_id) == 1
        in_cost, in_trace = stored_tokens(session, job_id)
    assert in_cost == in_trace  # the trace and the cost come from the same, single run
