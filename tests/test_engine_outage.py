"""An engine outage costs a pause, never a job: the real SGLang server is SIGKILLed while a
thread-pool worker (`python -m worker.main`) has searches in flight, and started again a
minute later on the same port. The worker stops taking messages, hands its jobs back
uncharged, says so in the database (/metrics reads it), and resumes when the server
answers; every job succeeds exactly once."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from lab.servers import RunningServer
from tests.utils.jobs import wait_for
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Candidate, Job, JobAttempt, JobCost, JobState, WorkerState
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.service import SessionFactory

# The session's server may still be starting; then a minute without it, and its start-up.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(1200)]
REPO = Path(__file__).resolve().parents[1]
DOWN_SECONDS = 60
CONFIG = {"strategy": "best_of_n", "verifier": "checker", "n": 2, "max_tokens": 48}


def _count(sessions: SessionFactory, state: JobState) -> int:
    with sessions() as session:
        return session.exec(select(func.count()).select_from(Job)
                            .where(Job.state == state)).one()


def test_a_server_killed_mid_batch_and_restarted_a_minute_later_fails_no_job(
    sessions: SessionFactory, db_url: str, redis_url: str, sglang: RunningServer,
    tmp_path: Path,
) -> None:
    rows = [ProblemIn(line=i + 1, problem=f"What is {i + 12} + {3 * i + 7}?",
                      gold=str(4 * i + 19)) for i in range(24)]
    with sessions() as session:
        _, ids = create_batch(session=session, owner="tester", problems=rows, config=CONFIG)
    app = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, ids)
    app.close()
    env = {**os.environ, "TTCQ_DATABASE_URL": db_url, "TTCQ_REDIS_URL": redis_url,
           "TTCQ_ENGINE": "sglang", "TTCQ_ENGINE_URL": sglang.url,
           "TTCQ_REAPER_INTERVAL_SECONDS": "2"}  # attempts, lease and the rest: defaults
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "ttcq.worker.main", "--concurrency", "8"],
                                  cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_for(lambda: _count(sessions, JobState.succeeded) >= 2
                 and _count(sessions, JobState.running) >= 4, 600, "the batch to be under way")
        sglang.kill()
        wait_for(lambda: _paused(sessions), 120, "the worker to pause")
        time.sleep(DOWN_SECONDS)
        assert _count(sessions, JobState.failed) == 0
        assert _count(sessions, JobState.running) == 0  # all handed back, none held
        sglang.start_again()
        wait_for(lambda: _count(sessions, JobState.succeeded) == len(ids), 600,
                 "every job to succeed")
        assert not _paused(sessions)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    with sessions() as session:
        costs = session.exec(select(JobCost.job_id).where(col(JobCost.job_id).in_(ids))).all()
        per_job = session.exec(select(Candidate.job_id, func.count())
                               .where(col(Candidate.job_id).in_(ids))
                               .group_by(Candidate.job_id)).all()
        strikes = session.exec(select(func.sum(Job.strikes))).one()
        handed_back = session.exec(select(func.count()).select_from(JobAttempt)
                                   .where(JobAttempt.outcome == "outage")).one()
        [state] = session.exec(select(WorkerState)).all()
    assert sorted(costs) == sorted(ids)  # stored once each
    assert len(per_job) == len(ids) and all(count == 2 for _, count in per_job)
    assert strikes == 0 and handed_back >= 1  # the outage was nobody's fault
    assert state.outages == 1 and "engine back after" in state.reason


def _paused(sessions: SessionFactory) -> bool:
    with sessions() as session:
        states = session.exec(select(WorkerState.state)).all()
    return list(states) == ["paused"]
