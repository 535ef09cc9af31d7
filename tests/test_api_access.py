"""Tokens and owner isolation; health, metrics and the OpenAPI spec."""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import select

from tests.utils.api_factories import ALICE, BOB, api_settings, auth, running_api
from ttcq.db.models import Job
from ttcq.worker.service import SessionFactory

PROBLEMS = [{"problem": "What is 2 + 3?", "answer": "5"}]


@pytest.fixture
def url(db_url: str, redis_url: str) -> Iterator[str]:
    with running_api(api_settings(db_url, redis_url)) as (_, base_url):
        yield base_url


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url) as client:
        yield client


def alice_batch(http: httpx.Client) -> dict[str, Any]:
    response = http.post("/v1/batches", json={"problems": PROBLEMS}, headers=auth(ALICE))
    assert response.status_code == 201
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/batches"),
    ("POST", "/v1/batches"),
    ("GET", f"/v1/batches/{uuid.uuid4()}"),
    ("GET", f"/v1/jobs/{uuid.uuid4()}"),
])
def test_requests_without_a_token_are_401(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_unknown_token_is_401(http: httpx.Client) -> None:
    assert http.get("/v1/batches", headers=auth("not-a-token")).status_code == 401


@pytest.mark.parametrize("method, suffix", [
    ("GET", ""), ("GET", "/results"), ("POST", "/cancel"),
])
def test_another_users_batch_is_404(http: httpx.Client, method: str, suffix: str) -> None:
    batch = alice_batch(http)
    response = http.request(method, f"/v1/batches/{batch['id']}{suffix}", headers=auth(BOB))
    assert response.status_code == 404


def test_cancel_by_another_user_changes_nothing(http: httpx.Client) -> None:
    batch = alice_batch(http)
    http.post(f"/v1/batches/{batch['id']}/cancel", headers=auth(BOB))
    read = http.get(f"/v1/batches/{batch['id']}", headers=auth(ALICE)).json()
    assert read["cancel_requested"] is False and read["counts"]["queued"] == 1


def test_another_users_job_is_404(http: httpx.Client, sessions: SessionFactory) -> None:
    alice_batch(http)
    with sessions() as session:
        job_id = session.exec(select(Job.id)).one()
    assert http.get(f"/v1/jobs/{job_id}", headers=auth(BOB)).status_code == 404
    assert http.get(f"/v1/jobs/{job_id}", headers=auth(ALICE)).status_code == 200


def test_listing_shows_only_the_callers_batches(http: httpx.Client) -> None:
    alice_batch(http)
    assert http.get("/v1/batches", headers=auth(BOB)).json() == []
    assert len(http.get("/v1/batches", headers=auth(ALICE)).json()) == 1


def test_healthz_checks_database_and_redis(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_reports_unreachable_redis_but_stays_up(db_url: str) -> None:
    with running_api(api_settings(db_url, "redis://127.0.0.1:1/0")) as (_, base_url):
        response = httpx.get(f"{base_url}/healthz")
    assert response.status_code == 200 and response.json()["redis"] == "unreachable"


def test_healthz_is_503_without_a_database(redis_url: str) -> None:
    dead = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"
    with running_api(api_settings(dead, redis_url)) as (_, base_url):
        response = httpx.get(f"{base_url}/healthz")
    assert response.status_code == 503 and response.json()["database"] == "unreachable"


def test_metrics_count_jobs_by_state_and_requests(http: httpx.Client) -> None:
    alice_batch(http)
    text = http.get("/metrics").text
    assert 'ttcq_jobs{state="queued"} 1.0' in text
    assert ('ttcq_api_requests_total{method="POST",route="/v1/batches",status="201"} 1.0'
            in text)


def test_openapi_spec_describes_every_route(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/batches", "/v1/batches/upload", "/v1/batches/{batch_id}",
            "/v1/batches/{batch_id}/results", "/v1/batches/{batch_id}/cancel",
            "/v1/jobs/{job_id}", "/healthz", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_openapi_references_all_resolve(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    refs = set(_refs(spec))
    schemas = spec["components"]["schemas"]
    assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)
