"""Factories for API and CLI tests: settings, a live server in a thread, stored results."""

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import select

from ttcq.api.app import create_app
from ttcq.db.jobs import claim_job
from ttcq.db.models import Job, JobCostBase
from ttcq.settings import Settings
from ttcq.worker.celery_app import DEFAULT_QUEUE
from ttcq.worker.engines.base import Usage
from ttcq.worker.search.types import Candidate, SearchResult, Trace
from ttcq.worker.service import SessionFactory
from ttcq.worker.stored import store_search_result

ALICE, BOB = "alice-token", "bob-token"
MAX_PROBLEM_CHARS = 200
MAX_PROBLEMS = 5


def api_settings(db_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Two users, and small limits so that tests can exceed them cheaply."""
    values: dict[str, Any] = {
        "database_url": db_url, "redis_url": redis_url,
        "api_tokens": [f"{ALICE}:alice", f"{BOB}:bob"],
        "max_problem_chars": MAX_PROBLEM_CHARS, "max_batch_problems": MAX_PROBLEMS,
    }
    return Settings(**{**values, **overrides})


def auth(token: str = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve app with uvicorn on a free port in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test API server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def running_api(settings: Settings) -> Iterator[tuple[FastAPI, str]]:
    """A fresh app on a live server: (app, base URL). Its Celery app is closed after."""
    app = create_app(settings)
    try:
        with live_server(app) as url:
            yield app, url
    finally:
        app.state.celery.close()


def queued_messages(redis_url: str, queue: str = DEFAULT_QUEUE) -> int:
    """Messages waiting in a Celery queue on Redis, over all its priority lists
    (kombu keeps one list per priority step: `ttcq`, `ttcq\\x06\\x169`, ...)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k for k in client.scan_iter(f"{queue}*") if client.type(k) == b"list"]
        return sum(int(client.llen(k)) for k in keys)
    finally:
        client.close()


def count_rows(sessions: SessionFactory, model: type) -> int:
    with sessions() as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def _result(answers: list[str], selected: int) -> SearchResult:
    trace = Trace()
    root = trace.add(None, "prompt", "the prompt")
    candidates = []
    for i, answer in enumerate(answers):
        leaf = trace.add(root, "step", f"so \\boxed{{{answer}}}", status="finished")
        leaf.prompt_tokens, leaf.completion_tokens = 20, 8
        candidates.append(Candidate(index=i, group=i, leaf_id=leaf.id, text=leaf.text,
                                    finish="stop", answer=answer, canonical=answer,
                                    extraction="boxed", selected=i == selected))
    trace.nodes[leaf.id].status = "selected"
    return SearchResult("majority", candidates, trace, selected, trace.usage(), Usage(),
                        curve={k + 1: 0 for k in range(len(answers))})


def store_solution(sessions: SessionFactory, job_id: uuid.UUID, answers: list[str],
                   selected: int = 0) -> None:
    """Finish a job as a worker would, with candidates giving these answers."""
    cost = JobCostBase(
        prompt_tokens=20 * len(answers), completion_tokens=8 * len(answers), engine_calls=1,
        wall_seconds=0.5, engine_seconds=0.4, flops=1e9,
    )
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker="test", lease_seconds=60,
                          max_attempts=3)
        job = session.get(Job, job_id)
        assert claim is not None and job is not None
        assert store_search_result(session=session, claim=claim, gold=job.gold,
                            result=_result(answers, selected), cost=cost)
