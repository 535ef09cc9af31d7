"""One real Celery worker (in a thread, solo pool) against real Redis, Postgres and model."""

from collections.abc import Iterator, Sequence

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from sqlalchemy import update
from sqlmodel import col

from lab.recording import RecordingEngine
from tests.utils.jobs import (
    count_rows,
    job_of,
    make_batch,
    stored_tokens,
    wait_for_state,
)
from ttcq.db.jobs import claim_job
from ttcq.db.models import Job, JobState, TraceNode, utcnow
from ttcq.db.results import job_candidates
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.engines.base import Completion, GenerationRequest, TransientEngineError
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.main import create_worker_app
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.service import SessionFactory
from ttcq.worker.tasks import backoff_seconds

SOLVE_TIMEOUT = 60


def worker_settings(db_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=db_url, redis_url=redis_url, lease_seconds=5, reaper_interval_seconds=1,
        task_time_limit=60, visibility_timeout=120,
    )


class FlakyEngine(RecordingEngine):
    """Fails its first generate call as a restarting server would."""

    failed = False

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        if not self.failed:
            self.failed = True
            raise TransientEngineError("server restarting")
        return super().generate(requests)


@pytest.fixture
def recording(engine: LlamaCppEngine) -> RecordingEngine:
    return RecordingEngine(engine)


@pytest.fixture
def worker(db_url: str, redis_url: str, recording: RecordingEngine) -> Iterator[Celery]:
    """A worker app whose engine is the recording wrapper, running in a thread."""
    app = create_worker_app(worker_settings(db_url, redis_url), engine_factory=lambda: recording)
    with start_worker(app, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        yield app
    app.close()


def test_worker_stores_every_row_of_a_solved_batch(
    worker: Celery, sessions: SessionFactory, recording: RecordingEngine
) -> None:
    job_ids = make_batch(sessions, problems=2)
    enqueue_jobs(worker, job_ids)
    wait_for_state(sessions, job_ids, JobState.succeeded, SOLVE_TIMEOUT)
    with sessions() as session:
        for job_id in job_ids:
            candidates = job_candidates(session=session, job_id=job_id)
            assert len(candidates) == 2
            [chosen] = [c for c in candidates if c.selected]
            finished = chosen.finish == "stop"
            assert job_of(sessions, job_id).answer == (chosen.answer if finished else None)
            assert count_rows(session, TraceNode, job_id) > 2
    with sessions() as session:
        in_cost, in_trace = zip(*(stored_tokens(session, j) for j in job_ids), strict=True)
    assert tuple(map(sum, zip(*in_cost, strict=True))) == recording.tokens
    assert tuple(map(sum, zip(*in_trace, strict=True))) == recording.tokens


def test_duplicate_messages_solve_a_job_once(
    worker: Celery, sessions: SessionFactory, recording: RecordingEngine
) -> None:
    first, second = make_batch(sessions, problems=2)
    # One worker consumes in order: once `second` is done, both copies of `first` were seen.
    enqueue_jobs(worker, [first, first, second])
    wait_for_state(sessions, [first, second], JobState.succeeded, SOLVE_TIMEOUT)
    assert job_of(sessions, first).attempts == 1
    assert recording.generated.calls == 2  # majority: one engine call per job


def test_transient_engine_error_is_retried(
    db_url: str, redis_url: str, sessions: SessionFactory, engine: LlamaCppEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ttcq.worker.tasks.BACKOFF_BASE_SECONDS", 0)
    flaky = FlakyEngine(engine)
    app = create_worker_app(worker_settings(db_url, redis_url), engine_factory=lambda: flaky)
    [job_id] = make_batch(sessions)
    with start_worker(app, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        enqueue_jobs(app, [job_id])
        wait_for_state(sessions, [job_id], JobState.succeeded, SOLVE_TIMEOUT)
    app.close()
    job = job_of(sessions, job_id)
    assert (job.attempts, job.error) == (2, None)


def test_reaper_in_the_worker_requeues_a_dead_workers_job(
    worker: Celery, sessions: SessionFactory
) -> None:
    [job_id] = make_batch(sessions)
    with sessions() as session:  # a worker that claimed the job and died: no message left
        claim_job(session=session, job_id=job_id, worker="dead", lease_seconds=5, max_attempts=3)
        session.exec(update(Job).where(col(Job.id) == job_id).values(lease_until=utcnow()))
        session.commit()
    wait_for_state(sessions, [job_id], JobState.succeeded, SOLVE_TIMEOUT)
    assert job_of(sessions, job_id).attempts == 2


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(r) for r in range(3)] == [5, 10, 20]
    assert backoff_seconds(20) == 300


def test_solve_task_is_registered_on_its_own_app_only(db_url: str, redis_url: str) -> None:
    settings = worker_settings(db_url, redis_url)
    worker_app = create_worker_app(settings)
    enqueue_only = make_celery(settings)
    assert "ttcq.solve" in worker_app.tasks
    assert "ttcq.solve" not in enqueue_only.tasks  # a shared task would leak into every app
    worker_app.close()
    enqueue_only.close()


def test_celery_app_delivers_at_least_once(db_url: str, redis_url: str) -> None:
    conf = make_celery(worker_settings(db_url, redis_url)).conf
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost) == (True, True)
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
