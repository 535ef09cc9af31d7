"""What a worker does when the world moves under it: cancellation, a lost lease, a long
engine call, a transient error on the last attempt, and the reaper's re-enqueue."""

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu.exceptions import OperationalError
from sqlalchemy import update
from sqlalchemy.exc import OperationalError as DBOperationalError
from sqlmodel import Session, col

from lab.recording import RecordingEngine
from tests.utils.jobs import count_rows, job_of, make_batch
from ttcq.db.batches import cancel_batch
from ttcq.db.jobs import claim_job
from ttcq.db.models import Candidate, Job, JobCost, JobState, utcnow
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.crew import Crew
from ttcq.worker.engines.base import Completion, GenerationRequest, TransientEngineError
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.leases import JobCancelled, lease_board
from ttcq.worker.main import check_model
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.reaper import reap_once, redeliver_stuck, resend_lost
from ttcq.worker.service import Requeued, SessionFactory, hold_lease, process_job
from ttcq.worker.tasks import register_tasks

Hook = Callable[[], None]


class HookedEngine(RecordingEngine):
    """Runs a hook as its first generate call starts: the world changing mid-search."""

    def __init__(self, inner: LlamaCppEngine, hook: Hook):
        super().__init__(inner)
        self.hook: Hook | None = hook

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return super().generate(requests)


def _process(sessions: SessionFactory, job_id: uuid.UUID, engine: RecordingEngine,
             max_attempts: int = 3) -> str:
    return process_job(sessions=sessions, job_id=job_id, engine=engine, worker_name="w1",
                       lease_seconds=5, max_attempts=max_attempts, check_seconds=0.05)


def test_cancelling_a_running_batch_stops_its_job_at_the_next_engine_call(
    sessions: SessionFactory, engine: LlamaCppEngine
) -> None:
    [job_id] = make_batch(sessions, strategy="best_of_n", verifier="self_judge", max_tokens=4)

    def cancel() -> None:
        with sessions() as session:
            cancel_batch(session=session, batch_id=job_of(sessions, job_id).batch_id)
        time.sleep(0.5)  # several lease checks: the keeper has seen the cancellation

    hooked = HookedEngine(engine, cancel)
    assert _process(sessions, job_id, hooked) == "cancelled"
    assert (hooked.generated.calls, hooked.judged.calls) == (1, 0)  # the verifier never ran
    assert job_of(sessions, job_id).state == JobState.cancelled


def test_a_job_handed_to_another_worker_stores_nothing(
    sessions: SessionFactory, engine: LlamaCppEngine
) -> None:
    [job_id] = make_batch(sessions, max_tokens=4)

    def taken_over() -> None:
        """Our lease expired and a second worker claimed the job, in one transaction (else
        our lease keeper could renew the lease in between)."""
        with sessions() as session:
            session.exec(update(Job).where(col(Job.id) == job_id).values(lease_until=utcnow()))
            claim_job(session=session, job_id=job_id, worker="w2", lease_seconds=60,
                      max_attempts=3)

    assert _process(sessions, job_id, HookedEngine(engine, taken_over)) == "lost"
    with sessions() as session:
        assert count_rows(session, Candidate, job_id) == 0
        assert session.get(JobCost, job_id) is None
    assert job_of(sessions, job_id).worker == "w2"


def test_lease_keeper_renews_the_lease_while_an_engine_call_runs(
    sessions: SessionFactory,
) -> None:
    [job_id] = make_batch(sessions)
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker="w1", lease_seconds=5,
                          max_attempts=3)
    assert claim is not None
    first_lease = job_of(sessions, job_id).lease_until
    with hold_lease(sessions, claim, lease_seconds=5, every=0.05) as keeper:
        time.sleep(0.3)  # one long engine call: no check() in between
        keeper.check()
    later_lease = job_of(sessions, job_id).lease_until
    assert first_lease is not None and later_lease is not None and later_lease > first_lease


def _server_restarting() -> None:
    raise TransientEngineError("server restarting")


def test_transient_error_on_the_last_attempt_fails_the_job(
    sessions: SessionFactory, engine: LlamaCppEngine
) -> None:
    [job_id] = make_batch(sessions)
    restarting = HookedEngine(engine, _server_restarting)
    assert _process(sessions, job_id, restarting, max_attempts=1) == "failed"
    job = job_of(sessions, job_id)
    assert (job.state, job.error) == (JobState.failed, "transient: server restarting")
    assert job.failure == "transient"


def test_transient_error_with_attempts_left_requeues_and_raises(
    sessions: SessionFactory, engine: LlamaCppEngine
) -> None:
    [job_id] = make_batch(sessions)
    with pytest.raises(Requeued):
        _process(sessions, job_id, HookedEngine(engine, _server_restarting))
    job = job_of(sessions, job_id)
    # Without an engine watch (no served engine) the failure is the job's own: a strike.
    assert (job.state, job.strikes, job.failure) == (JobState.queued, 1, None)


def _queued_messages(redis_url: str) -> dict[str, list[dict[str, object]]]:
    """Messages waiting in Redis, by list key (kombu keeps one list per priority)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [str(k) for k in client.keys() if client.type(k) == "list"]
        return {k: [json.loads(m) for m in client.lrange(k, 0, -1)] for k in keys}
    finally:
        client.close()


def _expired_claim(sessions: SessionFactory, job_id: uuid.UUID) -> None:
    """The job was claimed by a worker that died: its lease is over."""
    with sessions() as session:
        claim_job(session=session, job_id=job_id, worker="dead", lease_seconds=5,
                  max_attempts=3)
        session.exec(update(Job).where(col(Job.id) == job_id).values(lease_until=utcnow()))
        session.commit()


def test_reap_once_enqueues_expired_jobs_at_their_batch_priority(
    sessions: SessionFactory, db_url: str, redis_url: str
) -> None:
    [job_id] = make_batch(sessions, priority=7)
    _expired_claim(sessions, job_id)
    app: Celery = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    assert reap_once(sessions=sessions, app=app, max_attempts=3) == [job_id]
    app.close()
    [(key, [message])] = _queued_messages(redis_url).items()
    assert key == "ttcq\x06\x162"  # our priority 7 is Redis priority 2
    headers = message["headers"]
    assert isinstance(headers, dict)
    assert (headers["task"], headers["argsrepr"]) == ("ttcq.solve", repr([str(job_id)]))


def test_reap_once_enqueues_on_the_queue_of_the_batch_model(
    sessions: SessionFactory, db_url: str, redis_url: str
) -> None:
    [job_id] = make_batch(sessions, model="smollm2-135m")
    _expired_claim(sessions, job_id)
    app: Celery = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    reap_once(sessions=sessions, app=app, max_attempts=3)
    app.close()
    [(key, [_message])] = _queued_messages(redis_url).items()
    assert key.startswith("smollm2-135m")  # not the default queue: no other model's worker


def test_reap_once_with_redis_away_leaves_the_jobs_for_the_next_round(
    sessions: SessionFactory, db_url: str
) -> None:
    [job_id] = make_batch(sessions)
    _expired_claim(sessions, job_id)
    app = make_celery(Settings(database_url=db_url, redis_url="redis://127.0.0.1:1/0"))
    options = {**app.conf.broker_transport_options, "max_retries": 0}  # fail fast
    app.conf.update(task_publish_retry=False, broker_transport_options=options)
    with pytest.raises(OperationalError):
        reap_once(sessions=sessions, app=app, max_attempts=3)
    app.close()
    assert job_of(sessions, job_id).state == JobState.running  # still expired: reaped later


def test_solve_task_retries_while_the_database_is_unreachable(
    sessions: SessionFactory, db_url: str, redis_url: str, engine: LlamaCppEngine
) -> None:
    [job_id] = make_batch(sessions, max_tokens=4)
    outages = iter([True])

    def flaky_sessions() -> AbstractContextManager[Session]:
        if next(outages, False):
            raise DBOperationalError("SELECT 1", {}, Exception("connection refused"))
        return sessions()

    app = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    crew = Crew(lease_board(flaky_sessions, 300, 1.0), flaky_sessions)
    solve = register_tasks(app, settings=Settings(database_url=db_url), crew=crew,
                           engine_factory=lambda: engine)
    # Eagerly applied, a retry runs again at once, in this thread.
    assert solve.apply(args=[str(job_id)]).get() == "succeeded"
    app.close()
    assert job_of(sessions, job_id).attempts == 1


def test_worker_refuses_to_start_without_its_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="model file not found"):
        check_model(Settings(model_path=str(tmp_path / "missing.gguf")))


def test_lease_keeper_outlasts_a_passing_database_error(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker="w1", lease_seconds=5,
                          max_attempts=3)
    assert claim is not None
    first_lease = job_of(sessions, job_id).lease_until
    outages = iter([True])

    def flaky_sessions() -> AbstractContextManager[Session]:
        if next(outages, False):
            raise DBOperationalError("UPDATE job", {}, Exception("connection reset"))
        return sessions()

    with hold_lease(flaky_sessions, claim, lease_seconds=5, every=0.05) as keeper:
        time.sleep(0.3)
        keeper.check()  # one failed renewal is no lost lease
    later_lease = job_of(sessions, job_id).lease_until
    assert first_lease is not None and later_lease is not None and later_lease > first_lease


def test_a_result_that_cannot_be_stored_fails_the_job_at_once(
    sessions: SessionFactory, engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    [job_id] = make_batch(sessions, max_tokens=4)

    def refuse(**_: object) -> bool:
        raise ValueError("unstorable")

    monkeypatch.setattr("ttcq.worker.service.store_search_result", refuse)
    assert _process(sessions, job_id, RecordingEngine(engine)) == "failed"
    job = job_of(sessions, job_id)
    assert job.state == JobState.failed and "unstorable" in (job.error or "")


def test_queued_jobs_whose_messages_redis_lost_are_sent_once_more(
    sessions: SessionFactory, db_url: str, redis_url: str
) -> None:
    job_ids = make_batch(sessions, problems=2)  # stored, but no message reached Redis
    app: Celery = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    assert sorted(resend_lost(sessions=sessions, app=app)) == sorted(job_ids)
    assert resend_lost(sessions=sessions, app=app) == []  # the counts agree now: once only
    app.close()
    [(_key, messages)] = _queued_messages(redis_url).items()
    assert len(messages) == 2


def test_a_queue_holding_its_messages_is_left_alone(
    sessions: SessionFactory, db_url: str, redis_url: str
) -> None:
    job_ids = make_batch(sessions, problems=2)
    app: Celery = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, job_ids)
    assert resend_lost(sessions=sessions, app=app) == []
    app.close()


def test_one_thread_renews_every_running_jobs_lease(sessions: SessionFactory) -> None:
    job_ids = make_batch(sessions, problems=2)
    with sessions() as session:
        claims = [claim_job(session=session, job_id=j, worker="w1", lease_seconds=5,
                            max_attempts=3) for j in job_ids]
    before = [job_of(sessions, j).lease_until for j in job_ids]
    threads = threading.active_count()
    assert claims[0] is not None and claims[1] is not None
    with hold_lease(sessions, claims[0], lease_seconds=5, every=0.05) as first, \
            hold_lease(sessions, claims[1], lease_seconds=5, every=0.05) as second:
        assert threading.active_count() == threads + 1  # one renewer for both
        time.sleep(0.3)
        first.check()
        second.check()
        with sessions() as session:
            cancel_batch(session=session, batch_id=job_of(sessions, job_ids[0]).batch_id)
        time.sleep(0.3)
        with pytest.raises(JobCancelled):
            first.check()
    after = [job_of(sessions, j).lease_until for j in job_ids]
    assert all(a is not None and b is not None and a > b
               for a, b in zip(after, before, strict=True))


def test_a_message_taken_by_a_worker_that_died_before_claiming_is_delivered_again(
    sessions: SessionFactory, db_url: str, redis_url: str
) -> None:
    taken, solved = make_batch(sessions, problems=2)
    app: Celery = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, [taken, solved])
    client = redis.Redis.from_url(redis_url)
    # A worker took both messages (kombu's unacknowledged set) and died before claiming
    # the first; the second job it had finished.
    [key] = _queued_messages(redis_url)
    for tag in ("dead-1", "dead-2"):
        raw = json.loads(client.rpop(key) or b"")
        client.hset("unacked", tag, json.dumps([raw, "", "ttcq"]))
        client.zadd("unacked_index", {tag: time.time() - 60})
    with sessions() as session:
        session.exec(update(Job).where(col(Job.id) == solved).values(state=JobState.succeeded))
        session.commit()
    assert redeliver_stuck(sessions=sessions, app=app, older_than=10) == [taken]
    # The queued one's back on its queue; the finished one's is dropped (it would hide a
    # lost message from the reaper's count).
    assert client.hlen("unacked") == 0 and client.llen(key) == 1
    [message] = _queued_messages(redis_url)[key]
    assert message["headers"]["argsrepr"] == repr([str(taken)])  # type: ignore[index]
    assert redeliver_stuck(sessions=sessions, app=app, older_than=10) == []
    client.close()
    app.close()


def test_a_handed_back_job_goes_to_the_front_of_its_queue(
    sessions: SessionFactory, db_url: str, redis_url: str
) -> None:
    waiting, handed_back = make_batch(sessions, problems=2)
    app: Celery = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, [waiting])
    enqueue_jobs(app, [handed_back], first=True)
    app.close()
    client = redis.Redis.from_url(redis_url)
    [key] = _queued_messages(redis_url)
    popped = [json.loads(client.rpop(key) or b"") for _ in range(2)]  # as a worker pops
    client.close()
    assert [m["headers"]["argsrepr"] for m in popped] == [repr([str(handed_back)]),
                                                         repr([str(waiting)])]
