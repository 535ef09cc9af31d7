"""Bulk submission: the pipelined enqueue against Celery's own, atomicity when Redis or
Postgres fail part way, and bad input anywhere in a large file."""

import base64
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from kombu.exceptions import OperationalError
from sqlalchemy import text
from sqlmodel import Session, col, select

from tests.utils.api_factories import api_settings, auth, count_rows, queued_messages, running_api
from tests.utils.jobs import make_batch, wait_for_state
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.migrate import upgrade
from ttcq.db.models import Batch, Job, JobState
from ttcq.db.session import get_engine
from ttcq.ids import uuid4s
from ttcq.settings import Settings
from ttcq.worker import queue
from ttcq.worker.celery_app import SOLVE_TASK, make_celery
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.main import create_worker_app
from ttcq.worker.queue import celery_priority, enqueue_jobs
from ttcq.worker.reaper import resend_lost
from ttcq.worker.service import SessionFactory

CONFIG = {"strategy": "majority", "n": 1, "verifier": "none", "max_tokens": 4}


def _lists(url: str) -> dict[str, list[dict[str, Any]]]:
    client = redis.Redis.from_url(url)
    try:
        return {key.decode(): [json.loads(m) for m in client.lrange(key, 0, -1)]
                for key in client.scan_iter() if client.type(key) == b"list"}
    finally:
        client.close()


def _masked(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message with its per-message ids blanked and its body decoded."""
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for key in ("id", "root_id"):
        message["headers"][key] = "?"
    message["properties"].update(correlation_id="?", delivery_tag="?")
    return message


def test_a_pipelined_message_is_the_one_celery_sends(redis_url: str) -> None:
    app = make_celery(Settings(redis_url=redis_url))
    job_id = uuid.uuid4()
    app.send_task(SOLVE_TASK, args=[str(job_id)], queue="q", priority=celery_priority(7))
    enqueue_jobs(app, [job_id], priority=7, queue="q")
    app.close()
    [(key, [ours, celerys])] = _lists(redis_url).items()  # LPUSH: newest first
    assert key == "q\x06\x162"
    assert ours["headers"]["id"] != celerys["headers"]["id"]  # a task id of its own
    assert _masked(ours) == _masked(celerys)


def test_messages_keep_dataset_order_across_pushes(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "MESSAGES_PER_PUSH", 3)
    app = make_celery(Settings(redis_url=redis_url))
    ids = [uuid.uuid4() for _ in range(10)]
    assert enqueue_jobs(app, ids) == 10
    app.close()
    [messages] = _lists(redis_url).values()
    consumed = reversed(messages)  # workers pop from the tail
    assert [json.loads(base64.b64decode(m["body"]))[0][0] for m in consumed] == [
        str(i) for i in ids]


def test_a_real_worker_runs_pipelined_messages_by_priority(
    sessions: SessionFactory, db_url: str, redis_url: str, engine: LlamaCppEngine
) -> None:
    low = make_batch(sessions, problems=2, priority=1, max_tokens=4, n=1)
    high = make_batch(sessions, problems=2, priority=8, max_tokens=4, n=1)
    producer = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(producer, low, priority=1)
    enqueue_jobs(producer, high, priority=8)
    producer.close()
    settings = Settings(database_url=db_url, redis_url=redis_url)
    app = create_worker_app(settings, engine_factory=lambda: engine)
    with start_worker(app, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        wait_for_state(sessions, low + high, JobState.succeeded, 120)
    app.close()
    started = {job_id: _started(sessions, job_id) for job_id in low + high}
    assert max(started[j] for j in high) < min(started[j] for j in low)


def _started(sessions: SessionFactory, job_id: uuid.UUID) -> datetime:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.started_at is not None
        return job.started_at


@contextmanager
def private_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, on a free port: one it may kill."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield url, server
    finally:
        server.kill()
        server.wait()


def test_redis_dying_mid_enqueue_leaves_a_batch_the_reaper_sends_again(
    sessions: SessionFactory, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "MESSAGES_PER_PUSH", 5)
    monkeypatch.setattr(queue, "PUSHES_PER_ROUND_TRIP", 1)
    job_ids = make_batch(sessions, problems=2)
    with private_redis() as (url, server):
        app = make_celery(Settings(database_url=db_url, redis_url=url))
        app.conf.update(broker_transport_options={
            **app.conf.broker_transport_options, "max_retries": 0})

        def ids_then_crash() -> Iterator[uuid.UUID]:
            for sent, job_id in enumerate([*job_ids, *(uuid.uuid4() for _ in range(20))]):
                if sent == 10:  # two pushes are in Redis: now it dies, and its data with it
                    server.kill()
                    server.wait()
                yield job_id

        with pytest.raises(OperationalError):
            enqueue_jobs(app, ids_then_crash())
        app.close()
    assert {_state(sessions, job_id) for job_id in job_ids} == {JobState.queued}
    with private_redis() as (url, _):  # Redis back, empty: the reaper's next round
        app = make_celery(Settings(database_url=db_url, redis_url=url))
        assert sorted(resend_lost(sessions=sessions, app=app)) == sorted(job_ids)
        app.close()
        assert sum(len(m) for m in _lists(url).values()) == 2


def _state(sessions: SessionFactory, job_id: uuid.UUID) -> str:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.state


def test_a_database_failing_mid_copy_stores_nothing(sessions: SessionFactory,
                                                    db_url: str) -> None:
    def problems(pid: int) -> Iterator[ProblemIn]:
        for line in range(1, 2001):
            if line == 1500:  # the server ends this connection in the middle of the COPY
                with get_engine(db_url).connect() as admin:
                    admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            yield ProblemIn(line=line, problem=f"problem {line}")

    with Session(get_engine(db_url)) as session:
        pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with pytest.raises(psycopg.OperationalError):
            create_batch(session=session, owner="o", config={"strategy": "majority"},
                         problems=problems(pid))
    assert count_rows(sessions, Batch) == count_rows(sessions, Job) == 0


@pytest.fixture
def big_api(db_url: str, redis_url: str) -> Iterator[httpx.Client]:
    settings = api_settings(db_url, redis_url, max_batch_problems=5000)
    with running_api(settings) as (_, url), httpx.Client(base_url=url, headers=auth(),
                                                          timeout=60) as client:
        yield client


def _dataset(count: int) -> bytes:
    return b"".join(json.dumps({"problem": f"p{i}", "custom_id": i}).encode() + b"\n"
                    for i in range(count))


def test_a_bad_last_line_of_a_large_upload_stores_and_queues_nothing(
    big_api: httpx.Client, sessions: SessionFactory, redis_url: str
) -> None:
    data = _dataset(3000) + b'{"problem": "last", "custom_id": 7}\n'
    response = big_api.post("/v1/batches/upload", files={"file": ("set.jsonl", data)})
    assert response.status_code == 400
    assert response.json()["detail"]["errors"] == [{
        "line": 3001, "field": "custom_id", "message": "duplicate '7', first on line 8"}]
    assert count_rows(sessions, Batch) == count_rows(sessions, Job) == 0
    assert queued_messages(redis_url) == 0


def test_a_large_upload_is_stored_and_queued_whole(
    big_api: httpx.Client, sessions: SessionFactory, redis_url: str
) -> None:
    response = big_api.post("/v1/batches/upload", files={"file": ("set.jsonl", _dataset(5000))},
                            data={"config": json.dumps(CONFIG)})
    assert response.status_code == 201 and response.json()["total"] == 5000
    assert count_rows(sessions, Job) == queued_messages(redis_url) == 5000
    with sessions() as session:
        lines = session.exec(select(Job.line).order_by(col(Job.line))).all()
    assert list(lines) == list(range(1, 5001))


def test_an_unreachable_database_is_503_and_nothing_queued(redis_url: str) -> None:
    settings = api_settings("postgresql+psycopg://postgres@127.0.0.1:1/none", redis_url)
    with running_api(settings) as (_, url), httpx.Client(base_url=url, headers=auth()) as client:
        response = client.post("/v1/batches/upload", files={"file": ("s.jsonl", _dataset(3))})
    assert response.status_code == 503 and "nothing was stored" in response.json()["detail"]
    assert queued_messages(redis_url) == 0


def test_other_brokers_get_celerys_send_task() -> None:
    app = make_celery(Settings(redis_url="memory://"))
    ids = [uuid.uuid4() for _ in range(3)]
    assert enqueue_jobs(app, ids, queue="q") == 3
    with app.connection_for_write() as connection:
        received = [json.loads(connection.default_channel.basic_get("q").body)[0][0]
                    for _ in ids]
    app.close()
    assert received == [str(i) for i in ids]


def test_uuid4s_are_random_version_4_uuids() -> None:
    ids = uuid4s(2000)
    assert len(set(ids)) == 2000 and {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}


def test_sqlite_stores_a_streamed_batch_with_its_meta(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ttcq.db'}"
    upgrade(url)
    problems = (ProblemIn(line=i, problem=f"p{i}", meta={"level": i}) for i in range(1, 2501))
    with Session(get_engine(url)) as session:
        batch, ids = create_batch(session=session, owner="o", config={"strategy": "majority"},
                                  problems=problems)
        jobs = session.exec(select(Job).order_by(col(Job.line))).all()
        assert batch.total_jobs == 2500 and [j.id for j in jobs] == ids
    assert jobs[41].meta == {"level": 42}
    get_engine(url).dispose()
