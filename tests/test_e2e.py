"""End to end: a dataset file submitted over HTTP (the CLI's client, a real uvicorn server),
solved by a real Celery worker with the real model, and read back over HTTP."""

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from celery.contrib.testing.worker import start_worker
from sqlmodel import select

from lab.recording import RecordingEngine, SGLangRecorder
from tests.utils.jobs import PROBLEMS, stored_tokens, wait_for
from ttcq.api.app import create_app
from ttcq.api.client import Client
from ttcq.db.models import Job
from ttcq.settings import DEV_TOKEN, Settings
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.main import create_worker_app
from ttcq.worker.service import SessionFactory

CONFIG = {"strategy": "majority", "n": 2, "max_tokens": 32, "verifier": "none"}


@pytest.fixture
def settings(db_url: str, redis_url: str) -> Settings:
    return Settings(database_url=db_url, redis_url=redis_url, lease_seconds=5,
                    reaper_interval_seconds=1, task_time_limit=60, visibility_timeout=120)


@pytest.fixture
def api(settings: Settings) -> Iterator[Client]:
    """The API served by uvicorn on a free port, in a thread; a client of it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the API server")
    with Client(f"http://127.0.0.1:{sock.getsockname()[1]}", DEV_TOKEN) as client:
        yield client
    server.should_exit = True
    thread.join(10)
    sock.close()


def _dataset(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    rows = [{"question": text, "answer": f"#### {gold}", "id": f"p{i}"}
            for i, (text, gold) in enumerate(PROBLEMS)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _wait_until_done(api: Client, batch_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch = api.batch(batch_id)
        if batch["done"] == batch["total"] or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def _token_sums(rows: list[tuple[int, int, int]]) -> tuple[int, ...]:
    return tuple(map(sum, zip(*rows, strict=True)))


def test_a_dataset_submitted_over_http_is_solved_and_read_back(
    api: Client, settings: Settings, sessions: SessionFactory, engine: LlamaCppEngine,
    tmp_path: Path,
) -> None:
    recording = RecordingEngine(engine)
    worker = create_worker_app(settings, engine_factory=lambda: recording)
    with start_worker(worker, perform_ping_check=False, pool="solo", shutdown_timeout=60):
        created = api.submit_file(_dataset(tmp_path), config=CONFIG, fields={"custom_id": "id"})
        batch = _wait_until_done(api, created["id"], timeout=120)
    worker.close()
    assert batch["counts"]["succeeded"] == len(PROBLEMS)
    records = list(api.results(batch["id"]))
    assert [(r["custom_id"], r["gold"]) for r in records] == [("p0", "3"), ("p1", "72")]
    assert all(len(r["candidates"]) == 2 for r in records)
    costs = [(r["cost"]["prompt_tokens"], r["cost"]["cached_tokens"],
              r["cost"]["completion_tokens"]) for r in records]
    assert _token_sums(costs) == recording.tokens
    with sessions() as session:
        job_ids = session.exec(select(Job.id).where(Job.batch_id == uuid.UUID(batch["id"])))
        assert _token_sums([stored_tokens(session, j)[1] for j in job_ids]) == recording.tokens


@pytest.mark.timeout(900)  # the SGLang server may start inside this test
def test_a_batch_submitted_over_http_runs_on_the_sglang_server(
    api: Client, settings: Settings, sessions: SessionFactory,
    sglang_recorded: tuple[SGLangEngine, SGLangRecorder], tmp_path: Path,
) -> None:
    engine, recorder = sglang_recorded
    served = settings.model_copy(update={"engine": "sglang", "engine_url": recorder.url})
    worker = create_worker_app(served, engine_factory=lambda: engine)
    config = {"strategy": "beam_search", "n": 4, "beam_width": 2, "max_step_tokens": 24,
              "max_depth": 3, "max_tokens": 64, "verifier": "prm"}
    with start_worker(worker, perform_ping_check=False, pool="threads", concurrency=4,
                      shutdown_timeout=60):
        created = api.submit_file(_dataset(tmp_path), config=config, fields={"custom_id": "id"})
        batch = _wait_until_done(api, created["id"], timeout=600)
    worker.close()
    assert batch["counts"]["succeeded"] == len(PROBLEMS)
    records = list(api.results(batch["id"]))
    for record in records:
        assert record["cost"]["engine_model"] == engine.info.model
        assert record["cost"]["seeded"] is False and record["cost"]["verifier_tokens"] > 0
    with sessions() as session:
        job_ids = list(session.exec(select(Job.id).where(Job.batch_id == uuid.UUID(batch["id"]))))
    for job_id in job_ids:  # all over HTTP, and still exactly what the server reported
        with sessions() as session:
            assert stored_tokens(session, job_id)[0] == stored_tokens(session, job_id)[1]
    costs = [(r["cost"]["prompt_tokens"], r["cost"]["cached_tokens"],
              r["cost"]["completion_tokens"]) for r in records]
    assert _token_sums(costs) == recorder.reported()
