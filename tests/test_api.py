"""The batch API against a live server, real Postgres and real Redis."""

import io
import json
import uuid
from collections.abc import Iterator

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from fastapi import FastAPI
from sqlmodel import col, select

from tests.utils.api_factories import (
    BOB,
    MAX_PROBLEM_CHARS,
    MAX_PROBLEMS,
    api_settings,
    auth,
    count_rows,
    queued_messages,
    running_api,
    store_solution,
)
from ttcq.db.attempts import fail_job
from ttcq.db.jobs import claim_job
from ttcq.db.models import Batch, Job
from ttcq.db.workers import set_worker_state
from ttcq.worker.celery_app import make_celery
from ttcq.worker.reaper import resend_lost
from ttcq.worker.service import SessionFactory

PROBLEMS = [
    {"problem": "What is 2 + 3?", "answer": "5", "custom_id": "a"},
    {"problem": "What is 6 * 7?", "answer": "42", "custom_id": "b"},
    {"problem": "What is 9 - 4?", "answer": "5", "custom_id": "c"},
]
CONFIG = {"strategy": "majority", "n": 2, "verifier": "none", "max_tokens": 32}


@pytest.fixture
def api(db_url: str, redis_url: str) -> Iterator[tuple[FastAPI, str]]:
    with running_api(api_settings(db_url, redis_url)) as running:
        yield running


@pytest.fixture
def app(api: tuple[FastAPI, str]) -> FastAPI:
    return api[0]


@pytest.fixture
def client(api: tuple[FastAPI, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api[1], headers=auth()) as client:
        yield client


def submit(client: httpx.Client, problems: list[dict] | None = None, **extra: object) -> dict:
    body = {"config": CONFIG, "problems": problems or PROBLEMS, **extra}
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def all_jobs(sessions: SessionFactory) -> list[Job]:
    with sessions() as session:
        return list(session.exec(select(Job).order_by(col(Job.line))))


def job_ids(sessions: SessionFactory, batch_id: str) -> list[uuid.UUID]:
    return [job.id for job in all_jobs(sessions) if job.batch_id == uuid.UUID(batch_id)]


def test_create_returns_counts_and_stores_every_job(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    batch = submit(client, name="smoke", priority=3)
    assert (batch["total"], batch["counts"]["queued"], batch["done"]) == (3, 3, 0)
    assert (batch["name"], batch["priority"], batch["config"]["n"]) == ("smoke", 3, 2)
    assert count_rows(sessions, Job) == 3


def test_config_defaults_are_stored_filled_in(client: httpx.Client) -> None:
    batch = submit(client)
    assert batch["config"]["aggregation"] == "min" and batch["config"]["top_p"] == 1.0


def test_json_submission_enqueues_one_message_per_job(client: httpx.Client, redis_url: str) -> None:
    submit(client)
    assert queued_messages(redis_url) == 3


def test_a_batch_for_a_model_goes_to_that_model_queue(
    client: httpx.Client, redis_url: str
) -> None:
    submit(client, model="qwen-1.5b")
    assert (queued_messages(redis_url, "qwen-1.5b"), queued_messages(redis_url)) == (3, 0)


def test_upload_enqueues_one_message_per_job(client: httpx.Client, redis_url: str) -> None:
    data = "".join(json.dumps(p) + "\n" for p in PROBLEMS).encode()
    response = client.post("/v1/batches/upload", files={"file": ("set.jsonl", data)},
                           data={"config": json.dumps(CONFIG), "priority": "9"})
    assert response.status_code == 201, response.text
    assert queued_messages(redis_url) == 3


def test_upload_reads_parquet(client: httpx.Client) -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"q": ["What is 1+1?"], "gold": ["2"]}), sink)
    response = client.post("/v1/batches/upload", files={"file": ("set.parquet", sink.getvalue())},
                           data={"field": ["problem=q"]})
    assert response.status_code == 201, response.text
    assert response.json()["total"] == 1


def test_upload_reads_csv_with_a_field_mapping(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    data = b"id,text,solution\nk1,What is 3+3?,6\n"
    response = client.post("/v1/batches/upload", files={"file": ("set.csv", data)},
                           data={"field": ["problem=text", "gold=solution", "custom_id=id"]})
    assert response.status_code == 201, response.text
    [job] = all_jobs(sessions)
    assert (job.custom_id, job.problem, job.gold) == ("k1", "What is 3+3?", "6")


def test_upload_format_can_be_named_when_the_file_name_says_nothing(
    client: httpx.Client,
) -> None:
    response = client.post("/v1/batches/upload", files={"file": ("export.txt", b"problem\nq?\n")},
                           data={"format": "csv"})
    assert response.status_code == 201, response.text


BAD_UPLOADS = {
    "malformed JSON": (b'{"problem": "a"}\n{"problem": "b"\n', 2, None),
    "missing problem": (b'{"problem": "a"}\n{"answer": "3"}\n', 2, "problem"),
    "wrong type": (b'{"problem": "a"}\n{"problem": 12}\n', 2, "problem"),
    "empty file": (b"", None, None),
    "non-UTF-8": (b'{"problem": "a"}\n{"problem": "\xff"}\n', 2, None),
    "oversized problem": (json.dumps({"problem": "x" * (MAX_PROBLEM_CHARS + 1)}).encode(), 1,
                          "problem"),
    "too many problems": (b'{"problem": "p"}\n' * (MAX_PROBLEMS + 1), MAX_PROBLEMS + 1, None),
    "duplicate custom_id": (b'{"problem": "a", "custom_id": 1}\n{"problem": "b", "custom_id": 1}',
                            2, "custom_id"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_dataset_is_400_naming_line_and_field_and_stores_nothing(
    client: httpx.Client, sessions: SessionFactory, redis_url: str, case: str
) -> None:
    data, line, field = BAD_UPLOADS[case]
    response = client.post("/v1/batches/upload", files={"file": ("set.jsonl", data)})
    assert response.status_code == 400
    [error] = response.json()["detail"]["errors"]
    assert (error["line"], error["field"]) == (line, field)
    assert count_rows(sessions, Batch) == count_rows(sessions, Job) == 0
    assert queued_messages(redis_url) == 0


def test_bad_json_problems_name_their_position(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    body = {"problems": [{"problem": "fine"}, {"problem": ""}]}
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 400
    assert response.json()["detail"]["errors"][0] == {
        "line": 2, "field": "problem", "message": "missing or empty"}
    assert count_rows(sessions, Batch) == 0


@pytest.mark.parametrize("config, named", [
    ({"strategy": "beam_search", "n": 6, "beam_width": 4}, "beam_width"),
    ({"strategy": "guessing"}, "strategy"),
    ({"n": 0}, "n"),
    ({"temprature": 0.5}, "temprature"),
])
def test_bad_config_is_400_naming_the_field(
    client: httpx.Client, sessions: SessionFactory, config: dict, named: str
) -> None:
    response = client.post("/v1/batches", json={"config": config, "problems": PROBLEMS})
    assert response.status_code == 400
    assert named in response.json()["detail"]["message"]
    assert count_rows(sessions, Batch) == 0


def test_unknown_field_mapping_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/batches/upload", files={"file": ("s.jsonl", b'{"q": "a"}')},
                           data={"field": ["question=q"]})
    assert response.status_code == 400 and "FIELD=COLUMN" in response.json()["detail"]["message"]


def test_upload_config_must_be_a_json_object(client: httpx.Client) -> None:
    response = client.post("/v1/batches/upload", files={"file": ("s.jsonl", b'{"problem": "a"}')},
                           data={"config": "[1, 2]"})
    assert response.status_code == 400


def test_read_batch_reports_done_and_accuracy_so_far(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    batch = submit(client)
    first, second, _ = job_ids(sessions, batch["id"])
    store_solution(sessions, first, ["5", "4"], selected=0)  # gold 5: correct
    store_solution(sessions, second, ["41", "42"], selected=0)  # gold 42: wrong
    read = client.get(f"/v1/batches/{batch['id']}").json()
    assert (read["done"], read["counts"]["succeeded"], read["counts"]["queued"]) == (2, 2, 1)
    assert (read["graded"], read["correct"], read["accuracy"]) == (2, 1, 0.5)


def test_requeue_resends_only_the_queued_jobs(
    client: httpx.Client, sessions: SessionFactory, redis_url: str
) -> None:
    batch = submit(client)
    store_solution(sessions, job_ids(sessions, batch["id"])[0], ["5"])
    redis.Redis.from_url(redis_url).flushdb()  # Redis restarted and lost its messages
    response = client.post(f"/v1/batches/{batch['id']}/requeue")
    assert response.status_code == 200
    assert queued_messages(redis_url) == 2


def test_cancel_moves_queued_jobs_to_cancelled(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    batch = submit(client)
    store_solution(sessions, job_ids(sessions, batch["id"])[0], ["5"])
    response = client.post(f"/v1/batches/{batch['id']}/cancel")
    assert response.status_code == 200
    cancelled = response.json()
    assert cancelled["cancel_requested"] is True
    assert (cancelled["counts"]["cancelled"], cancelled["counts"]["succeeded"]) == (2, 1)
    assert cancelled["done"] == cancelled["total"] == 3


def test_results_stream_one_line_per_problem_in_order(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    batch = submit(client)
    store_solution(sessions, job_ids(sessions, batch["id"])[1], ["42", "42"], selected=1)
    response = client.get(f"/v1/batches/{batch['id']}/results")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [r["custom_id"] for r in rows] == ["a", "b", "c"]
    assert [r["status"] for r in rows] == ["queued", "succeeded", "queued"]
    assert (rows[1]["answer"], rows[1]["correct"], rows[1]["cost"]["engine_calls"]) == (
        "42", True, 1)
    assert [c["selected"] for c in rows[1]["candidates"]] == [False, True]


def test_results_are_read_page_by_page_without_losing_or_mixing_rows(
    client: httpx.Client, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ttcq.db.results.RESULTS_PAGE", 2)  # three jobs: two pages
    batch = submit(client)
    ids = job_ids(sessions, batch["id"])
    store_solution(sessions, ids[0], ["1"])
    store_solution(sessions, ids[2], ["7", "8", "9"])
    rows = [json.loads(line) for line in
            client.get(f"/v1/batches/{batch['id']}/results").text.splitlines()]
    assert [r["custom_id"] for r in rows] == ["a", "b", "c"]
    assert [[c["answer"] for c in r["candidates"]] for r in rows] == [["1"], [], ["7", "8", "9"]]


def test_read_job_includes_trace_candidates_and_cost(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    batch = submit(client)
    job_id = job_ids(sessions, batch["id"])[0]
    store_solution(sessions, job_id, ["5", "6"])
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert (job["state"], job["answer"], job["correct"], job["custom_id"]) == (
        "succeeded", "5", True, "a")
    assert [n["kind"] for n in job["trace"]] == ["prompt", "step", "step"]
    assert [c["answer"] for c in job["candidates"]] == ["5", "6"]
    assert job["cost"]["prompt_tokens"] == 40


def test_unknown_job_is_404(client: httpx.Client) -> None:
    assert client.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404


def test_list_shows_newest_batches_first(client: httpx.Client) -> None:
    first, second = submit(client, name="first"), submit(client, name="second")
    listed = client.get("/v1/batches").json()
    assert [b["id"] for b in listed] == [second["id"], first["id"]]
    assert listed[0]["counts"]["queued"] == 3


def test_unreachable_queue_leaves_the_batch_to_the_reaper_and_answers_202(
    app: FastAPI, client: httpx.Client, db_url: str, redis_url: str, sessions: SessionFactory
) -> None:
    broken = make_celery(api_settings(db_url, "redis://127.0.0.1:1/0"))
    broken.conf.update(task_publish_retry=False, broker_transport_options={
        **broken.conf.broker_transport_options, "max_retries": 0})
    app.state.celery = broken
    response = client.post("/v1/batches", json={"config": CONFIG, "problems": PROBLEMS})
    broken.close()
    assert response.status_code == 202
    assert "reaper" in response.json()["warning"]
    assert {job.state for job in all_jobs(sessions)} == {"queued"}
    working = make_celery(api_settings(db_url, redis_url))
    assert len(resend_lost(sessions=sessions, app=working)) == len(PROBLEMS)
    working.close()
    assert queued_messages(redis_url) == len(PROBLEMS)


def _fail(sessions: SessionFactory, job_id: uuid.UUID, failure: str, message: str) -> None:
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker="w", lease_seconds=60,
                          max_attempts=3)
        assert claim is not None
        assert fail_job(session=session, claim=claim, failure=failure, message=message,
                        progress=False, worker="w")


def test_retry_queues_failed_jobs_again_and_the_history_keeps_why_they_failed(
    client: httpx.Client, sessions: SessionFactory, redis_url: str
) -> None:
    batch = submit(client)
    first, second, third = job_ids(sessions, batch["id"])
    store_solution(sessions, first, ["5"])
    _fail(sessions, second, "engine", "sglang /generate: HTTP 400: prompt too long")
    _fail(sessions, third, "time_limit", "time limit of 3600 s exceeded")
    shown = client.get(f"/v1/batches/{batch['id']}").json()
    assert shown["failures"] == {"engine": 1, "time_limit": 1}
    redis.Redis.from_url(redis_url).flushdb()
    retried = client.post(f"/v1/batches/{batch['id']}/retry")
    assert retried.status_code == 200
    assert (retried.json()["counts"]["queued"], retried.json()["failures"]) == (2, {})
    assert queued_messages(redis_url) == 2  # the failed ones, not the solved one
    detail = client.get(f"/v1/jobs/{second}").json()
    assert (detail["state"], detail["error"], detail["strikes"]) == ("queued", None, 0)
    [attempt] = detail["attempt_history"]
    assert (attempt["outcome"], attempt["message"]) == (
        "failed", "sglang /generate: HTTP 400: prompt too long")


def test_retry_of_someone_elses_batch_is_not_found(
    client: httpx.Client, api: tuple[FastAPI, str]
) -> None:
    batch = submit(client)
    other = httpx.post(f"{api[1]}/v1/batches/{batch['id']}/retry",
                       headers=auth(BOB))
    assert other.status_code == 404


def test_metrics_show_each_live_workers_state_and_interrupted_attempts(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    batch = submit(client)
    _fail(sessions, job_ids(sessions, batch["id"])[0], "search", "boom")
    with sessions() as session:
        set_worker_state(session=session, name="celery@gpu1/7", state="paused",
                         reason="engine unreachable", outages=2)
    text = client.get("/metrics").text
    assert 'ttcq_worker_state{state="paused",worker="celery@gpu1/7"} 1.0' in text
    assert 'ttcq_worker_engine_outages{worker="celery@gpu1/7"} 2.0' in text
    assert 'ttcq_job_interruptions{charge="strike",outcome="failed"} 1.0' in text
