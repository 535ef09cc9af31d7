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

from api.deps import SessionDep, SettingsDep
from api.schemas import Health
from db import queries_api

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
def metrics(request: Request, session: SessionDep) -> Response:
    """Prometheus text format: request counts and jobs by state."""
    registry: Metrics = request.app.state.metrics
    for state, count in queries_api.jobs_by_state(session=session).items():
        registry.jobs.labels(state=state).set(count)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
