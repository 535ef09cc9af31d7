"""The Celery task: a thin shell over worker.service.process_job (an id in, retries out)."""

import logging
import os
import uuid
from collections.abc import Callable
from functools import cache, partial

from celery import Celery, Task
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from ttcq.db.jobs import batch_routes
from ttcq.db.session import get_engine
from ttcq.settings import Settings
from ttcq.worker.backends import make_engine, make_served_verifiers
from ttcq.worker.celery_app import SOLVE_TASK
from ttcq.worker.crew import Crew
from ttcq.worker.engines.base import Engine
from ttcq.worker.queue import enqueue_jobs, queue_for
from ttcq.worker.service import Outcome, Requeued, SessionFactory, process_job

EngineFactory = Callable[[], Engine]
BACKOFF_BASE_SECONDS = 5
BACKOFF_MAX_SECONDS = 300

logger = logging.getLogger(__name__)


def backoff_seconds(retries: int) -> int:
    """Exponential backoff: 5 s, 10 s, 20 s … capped at five minutes."""
    return int(min(BACKOFF_BASE_SECONDS * 2**retries, BACKOFF_MAX_SECONDS))


def send_first(app: Celery, sessions: SessionFactory, job_id: uuid.UUID) -> None:
    """A handed-back job's message, at the front of its model's queue at its batch's
    priority: it has a checkpoint to resume from, and should finish before new jobs start.
    (Should Redis refuse, the reaper re-sends queued jobs whose message is missing.)"""
    with sessions() as session:
        priority, model = batch_routes(session=session, job_ids=[job_id])[job_id]
    enqueue_jobs(app, [job_id], priority=priority, queue=queue_for(model), first=True)


def database_sessions(url: str) -> SessionFactory:
    """Sessions on the process's engine, looked up at call time so that a prefork child
    opens its own connections instead of inheriting its parent's."""
    return lambda: Session(get_engine(url), expire_on_commit=False)


def register_tasks(
    app: Celery,
    *,
    settings: Settings,
    crew: Crew,
    engine_factory: EngineFactory | None = None,
) -> Task:
    """Register the solve task on app. The engine is built once per process, on first use
    (after the prefork pool forked: llama.cpp state does not survive a fork); a served
    engine is watched for outages (worker.outage)."""

    @cache
    def engine() -> Engine:
        built = (engine_factory or partial(make_engine, settings))()
        if settings.engine != "llamacpp":
            crew.watch_engine(built)
        return built

    served = cache(partial(make_served_verifiers, settings))
    solve_job = partial(
        process_job,
        sessions=crew.sessions,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        time_limit=settings.task_time_limit,  # a thread pool's hard limit (worker/main.py)
        crew=crew,
    )

    # No max_retries: the claim caps a job's strikes at max_attempts, and giving up on a
    # database outage would leave the job 'queued' with no message.
    # shared=False: a shared task would be added to every app created later in the process
    # (each test's app would run the first app's closure, engine and all).
    @app.task(name=SOLVE_TASK, bind=True, shared=False, max_retries=None)
    def solve(task: Task, job_id: str) -> Outcome:
        worker_name = f"{task.request.hostname}/{os.getpid()}"
        try:
            outcome = solve_job(job_id=uuid.UUID(job_id), engine=engine(),
                                worker_name=worker_name, served=served())
        except Requeued as requeued:
            # The row is 'queued' again, which the reaper leaves alone: its one message is
            # sent now, after this one is acknowledged.
            if requeued.backoff:  # the failure was the job's own: it waits its turn
                raise task.retry(exc=requeued,
                                 countdown=backoff_seconds(task.request.retries)) from None
            send_first(app, crew.sessions, uuid.UUID(job_id))
            logger.info("job %s: handed back to the front of the queue", job_id)
            return "requeued"
        except OperationalError as error:
            # The database is away. If the job is still leased, the retry's claim loses
            # and the lease's expiry brings it back.
            logger.warning("job %s: %s, retrying", job_id, error)
            raise task.retry(exc=error, countdown=backoff_seconds(task.request.retries)) from error
        logger.info("job %s: %s", job_id, outcome)
        return outcome

    return solve
