"""Operations endpoints: /healthz for load balancers, /metrics for Prometheus."""

import logging

import redis
from fastapi import APIRouter, Request, Response, status
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from sqlalchemy.exc import SQLAlchemyError

from ttcq.api.deps import SessionDep, SettingsDep
from ttcq.api.schemas import Health
from ttcq.db import queries_api
from ttcq.db.models import WorkerState, utcnow
from ttcq.db.workers import live_workers

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


class Metrics:
    """A registry per app (not the global one), so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ttcq_api_requests", "API requests served", ["method", "route", "status"],
            registry=self.registry,
        )
        self.jobs = Gauge("ttcq_jobs", "jobs by state, all batches", ["state"],
                          registry=self.registry)
        self.workers = Gauge(
            "ttcq_worker_state", "1 for each live worker process in its state: running, "
            "paused (its engine is unreachable) or draining", ["worker", "state"],
            registry=self.registry)
        self.state_seconds = Gauge("ttcq_worker_state_seconds",
                                   "seconds each live worker has been in its state",
                                   ["worker"], registry=self.registry)
        self.outages = Gauge("ttcq_worker_engine_outages",
                             "engine outages each live worker waited out", ["worker"],
                             registry=self.registry)
        self.interruptions = Gauge(
            "ttcq_job_interruptions", "attempts that ended without a result, all batches, "
            "by how (lost, yielded, outage, transient, failed) and what they cost the job "
            "(none, stall, strike)", ["outcome", "charge"], registry=self.registry)

    def show_workers(self, live: list[WorkerState]) -> None:
        """Only workers seen lately: a label of a worker long gone would stay forever."""
        for gauge in (self.workers, self.state_seconds, self.outages):
            gauge.clear()
        now = utcnow()
        for worker in live:
            self.workers.labels(worker=worker.name, state=worker.state).set(1)
            self.state_seconds.labels(worker=worker.name).set(
                (now - worker.since).total_seconds())
            self.outages.labels(worker=worker.name).set(worker.outages)


def _redis_state(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
        return "ok"
    except redis.RedisError:
        return "unreachable"
    finally:
        client.close()


@router.get("/healthz", responses={503: {"model": Health}})
def healthz(session: SessionDep, settings: SettingsDep, response: Response) -> Health:
    """200 while the database answers (503 otherwise); Redis is reported, not required:
    reads keep working while the broker is away."""
    try:
        queries_api.ping(session=session)
        database = "ok"
    except SQLAlchemyError as error:
        log.warning("health check: database unreachable: %s", error)
        database = "unreachable"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    healthy = database == "ok"
    return Health(status="ok" if healthy else "degraded", database=database,
                  redis=_redis_state(settings.redis_url))


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Prometheus text format: request counts, jobs by state, interrupted attempts, and
    each live worker's state (a worker that misses three reaper rounds is not live)."""
    registry: Metrics = request.app.state.metrics
    for state, count in queries_api.jobs_by_state(session=session).items():
        registry.jobs.labels(state=state).set(count)
    registry.interruptions.clear()
    for (outcome, charge), count in queries_api.interruptions_by_outcome(
            session=session).items():
        registry.interruptions.labels(outcome=outcome, charge=charge).set(count)
    registry.show_workers(live_workers(session=session,
                                       seen_within=3 * settings.reaper_interval_seconds + 5))
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
