"""The FastAPI app factory (`uvicorn --factory api.app:create_app`)."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from celery import Celery
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from ttcq.api import (
    console,
    ops,
    routes,
    routes_browse,
    routes_labels,
    routes_policies,
    routes_reports,
)
from ttcq.api.ops import Metrics
from ttcq.settings import Settings, get_settings
from ttcq.worker.celery_app import make_celery


def create_app(settings: Settings | None = None, celery: Celery | None = None) -> FastAPI:
    """One app per process: settings validated once, one Celery app for enqueueing.
    Tests pass their own settings (a test database) and may pass their own Celery app."""
    settings = settings or get_settings()
    owns_celery = celery is None
    queue = celery or make_celery(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_celery:
            queue.close()  # release pooled broker connections

    app = FastAPI(
        title="ttcq",
        summary="Test-time-compute batch service for math problems",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.celery = queue
    app.state.metrics = Metrics()
    app.include_router(routes.router)
    app.include_router(routes_reports.router)
    app.include_router(routes_policies.router)
    app.include_router(routes_labels.router)
    app.include_router(routes_browse.router)
    app.include_router(ops.router)
    console.mount(app)  # the web console's pages under /
    app.middleware("http")(_count_requests)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, with the components of the bodies endpoints read themselves."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                           routes=app.routes)
        spec.setdefault("components", {}).setdefault("schemas", {}).update(
            routes.BODY_SCHEMAS)
        app.openapi_schema = spec
    return app.openapi_schema


async def _count_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    # The route's template, not the raw path: ids in paths would explode label cardinality.
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    metrics: Metrics = request.app.state.metrics
    metrics.requests.labels(request.method, template, str(response.status_code)).inc()
    return response
