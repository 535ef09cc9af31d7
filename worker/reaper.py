"""The reaper: jobs whose lease expired (their worker died) go back on the queue, and
queued jobs whose messages Redis lost are sent again.

It runs as a thread in every worker process; reaping is one conditional UPDATE, so
reapers on many workers never requeue the same job twice."""

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable

from celery import Celery, bootsteps
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from ttcq.db.jobs import (
    batch_routes,
    job_states,
    queued_counts_by_model,
    queued_ids_of_model,
    reap_expired,
)
from ttcq.db.models import FINAL_STATES, JobState
from ttcq.settings import Settings
from ttcq.worker.queue import (
    enqueue_jobs,
    forget,
    pending_messages,
    queue_for,
    redeliver,
    stuck_deliveries,
)
from ttcq.worker.service import SessionFactory

logger = logging.getLogger(__name__)
# A message unacknowledged this long whose job is still queued was taken by a worker that
# died before claiming it (a live one claims within milliseconds).
STUCK_AFTER_SECONDS = 10.0


def reap_once(
    *, sessions: SessionFactory, app: Celery, max_attempts: int
) -> list[uuid.UUID]:
    """Requeue expired jobs and enqueue them on their model's queue, at their batch's
    priority; returns the ids enqueued.

    The messages go out before the commit: a claim takes an expired job as readily as a
    queued one, so an early message is harmless, and if Redis is away the rollback leaves
    the jobs expired for the next round instead of 'queued' with no message."""
    with sessions() as session:
        ids = reap_expired(session=session, max_attempts=max_attempts)
        if ids:
            _enqueue_by_route(app, batch_routes(session=session, job_ids=ids))
            logger.warning("requeued %d jobs whose lease expired", len(ids))
        session.commit()
    return ids


def resend_lost(*, sessions: SessionFactory, app: Celery) -> list[uuid.UUID]:
    """Re-send the queued jobs of every model whose queue holds fewer messages than it has
    queued jobs: Redis lost some (a restart without persistence, a crash between commit and
    enqueue). Which ones is unknown, so all are re-sent; a job runs once however many
    messages it has, and once re-sent the counts agree, so this fires once per loss."""
    resent: list[uuid.UUID] = []
    with sessions() as session:
        for model, queued in queued_counts_by_model(session=session).items():
            if pending_messages(app, queue_for(model)) >= queued:
                continue
            ids = queued_ids_of_model(session=session, model=model)
            _enqueue_by_route(app, batch_routes(session=session, job_ids=ids))
            logger.warning("re-sent %d queued jobs of queue %s: messages were lost",
                           len(ids), queue_for(model))
            resent += ids
    return resent


def redeliver_stuck(*, sessions: SessionFactory, app: Celery, older_than: float
                    ) -> list[uuid.UUID]:
    """Messages a worker took and never acknowledged (worker.queue.stuck_deliveries):
    those of queued jobs go back on their queues (the worker died before claiming them;
    otherwise they would wait for the visibility timeout), those of finished jobs are
    dropped (they would only be skipped, and they hide lost messages from resend_lost's
    count). A job still running keeps its message. A message held for a retry's countdown
    may go out early: the job runs once either way. Returns the jobs sent again."""
    stuck = stuck_deliveries(app, older_than)
    if not stuck:
        return []
    with sessions() as session:
        states = job_states(session=session, job_ids=list(set(stuck.values())))
    again = [tag for tag, job_id in stuck.items() if states.get(job_id) == JobState.queued]
    done = [tag for tag, job_id in stuck.items()
            if states.get(job_id, JobState.succeeded) in FINAL_STATES]
    redeliver(app, again)
    forget(app, done)
    if again:
        logger.warning("redelivered %d messages taken by a worker that died before "
                       "claiming their jobs", len(again))
    return [stuck[tag] for tag in again]


def _enqueue_by_route(app: Celery, routes: dict[uuid.UUID, tuple[int, str]]) -> None:
    by_route: dict[tuple[int, str], list[uuid.UUID]] = defaultdict(list)
    for job_id, route in routes.items():
        by_route[route].append(job_id)
    for (priority, model), job_ids in by_route.items():
        enqueue_jobs(app, job_ids, priority=priority, queue=queue_for(model))


class Reaper:
    """Calls reap_once every interval on a daemon thread until stopped."""

    def __init__(
        self, *, app: Celery, sessions: SessionFactory, interval: float, max_attempts: int,
        on_round: Callable[[], None] | None = None,
    ):
        self._app, self._sessions, self._interval = app, sessions, interval
        self._max_attempts = max_attempts
        self._on_round = on_round
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ttcq-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                reap_once(sessions=self._sessions, app=self._app,
                          max_attempts=self._max_attempts)
                redeliver_stuck(sessions=self._sessions, app=self._app,
                                older_than=STUCK_AFTER_SECONDS)
                resend_lost(sessions=self._sessions, app=self._app)
                if self._on_round is not None:
                    self._on_round()
            except Exception:  # the database or Redis is away: try again next round
                logger.exception("reaper round failed")


def reaper_sessions(url: str) -> SessionFactory:
    """Sessions without a pool: the prefork parent must hold no open connection that a
    forked child would inherit and share."""
    engine = create_engine(url, poolclass=NullPool)
    return lambda: Session(engine, expire_on_commit=False)


def install_reaper(
    app: Celery, *, settings: Settings, sessions: SessionFactory | None = None,
    on_round: Callable[[], None] | None = None,
) -> None:
    """Run a Reaper in every worker started from app, for as long as the worker runs.
    A worker bootstep rather than the worker_ready signal: steps belong to one app (signals
    are process-wide) and run under celery.contrib.testing's embedded worker too."""
    reaper_sessions_ = sessions or reaper_sessions(settings.database_url)

    class ReaperStep(bootsteps.StartStopStep):
        requires = {"celery.worker.components:Pool"}

        def create(self, parent: object) -> Reaper:
            return Reaper(app=app, sessions=reaper_sessions_,
                          interval=settings.reaper_interval_seconds,
                          max_attempts=settings.max_attempts, on_round=on_round)

    app.steps["worker"].add(ReaperStep)
