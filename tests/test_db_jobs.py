"""The job row as the system of record: exclusive claims, leases, reaping, fenced writes."""

import math
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import event, update
from sqlmodel import Session, col, func, select

from tests.utils.jobs import PROBLEMS, count_rows, job_of, make_batch, synthetic_result, zero_cost
from ttcq.db import result_store
from ttcq.db.attempts import hand_back, mark_alone
from ttcq.db.batches import ProblemIn, cancel_batch, create_batch
from ttcq.db.jobs import Claim, claim_job, reap_expired, renew_leases
from ttcq.db.models import Batch, Candidate, Job, JobCost, JobState, TraceNode, utcnow
from ttcq.db.result_store import COPY_MIN_ROWS
from ttcq.db.session import execute_alone, get_engine
from ttcq.worker.service import SessionFactory
from ttcq.worker.stored import store_search_result

LEASE = 60


def _claim(sessions: SessionFactory, job_id: uuid.UUID, worker: str = "w1",
           max_attempts: int = 3) -> Claim | None:
    with sessions() as session:
        return claim_job(session=session, job_id=job_id, worker=worker,
                         lease_seconds=LEASE, max_attempts=max_attempts)


def _expire(sessions: SessionFactory, job_id: uuid.UUID) -> None:
    """Age the job's lease as if its worker had died a while ago."""
    with sessions() as session:
        session.exec(update(Job).where(col(Job.id) == job_id)
                     .values(lease_until=utcnow() - timedelta(seconds=1)))
        session.commit()


def _reap(sessions: SessionFactory, max_attempts: int = 3) -> list[uuid.UUID]:
    with sessions() as session:
        ids = reap_expired(session=session, max_attempts=max_attempts)
        session.commit()
        return ids


def _store(sessions: SessionFactory, claim: Claim, nodes: int = 3) -> bool:
    with sessions() as session:
        return store_search_result(session=session, claim=claim, gold="3",
                            result=synthetic_result(nodes), cost=zero_cost())


def test_concurrent_claims_have_one_winner(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    start = threading.Barrier(8)
    claims: list[Claim | None] = []

    def contend(i: int) -> None:
        start.wait()
        claims.append(_claim(sessions, job_id, worker=f"w{i}"))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(c.job_id, c.attempt) for c in claims if c is not None] == [(job_id, 1)]


def test_a_claim_carries_the_problem_and_its_batch_config(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions, n=3)
    claim = _claim(sessions, job_id)
    assert claim is not None
    assert (claim.problem, claim.gold) == (PROBLEMS[0][0], PROBLEMS[0][1])
    assert (claim.config["strategy"], claim.config["n"]) == ("majority", 3)


def test_claim_refuses_a_job_of_a_cancelled_batch(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    with sessions() as session:
        cancel_batch(session=session, batch_id=job_of(sessions, job_id).batch_id)
    assert _claim(sessions, job_id) is None


def test_claim_takes_over_an_expired_lease_with_the_next_attempt(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    _claim(sessions, job_id)
    _expire(sessions, job_id)
    claim = _claim(sessions, job_id, worker="w2")
    assert claim is not None and claim.attempt == 2


def test_lease_renewal_fails_after_the_batch_is_cancelled(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    with sessions() as session:
        assert renew_leases(session=session, claims=[claim], lease_seconds=LEASE) == {job_id}
        cancel_batch(session=session, batch_id=job_of(sessions, job_id).batch_id)
        assert renew_leases(session=session, claims=[claim], lease_seconds=LEASE) == set()


def test_lease_renewal_fails_for_a_superseded_claim(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    stale = _claim(sessions, job_id)
    assert stale is not None
    _expire(sessions, job_id)
    fresh = _claim(sessions, job_id, worker="w2")
    assert fresh is not None
    with sessions() as session:  # one statement renews the live claim, not the stale one
        assert renew_leases(session=session, claims=[stale, fresh],
                            lease_seconds=LEASE) == {job_id}
        assert renew_leases(session=session, claims=[stale], lease_seconds=LEASE) == set()


def test_reap_requeues_jobs_whose_lease_expired(sessions: SessionFactory) -> None:
    expired, live = make_batch(sessions, problems=2)
    _claim(sessions, expired)
    _claim(sessions, live)
    _expire(sessions, expired)
    assert _reap(sessions) == [expired]
    assert job_of(sessions, expired).state == JobState.queued
    assert job_of(sessions, live).state == JobState.running


def test_reap_fails_a_job_lost_alone_on_its_last_strike(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id, max_attempts=1)
    assert claim is not None
    with sessions() as session:
        assert mark_alone(session=session, claim=claim)
    _expire(sessions, job_id)
    assert _reap(sessions, max_attempts=1) == []
    job = job_of(sessions, job_id)
    assert (job.state, job.lease_until, job.failure) == (JobState.failed, None, "worker_lost")
    assert "while this job ran alone" in (job.error or "")


def _hand_back(sessions: SessionFactory, claim: Claim, max_attempts: int = 3) -> JobState | None:
    with sessions() as session:
        return hand_back(session=session, claim=claim, outcome="transient", message="busy",
                         progress=False, alone=False, max_attempts=max_attempts)


def test_a_transient_failure_of_its_own_requeues_a_job_with_strikes_left(
    sessions: SessionFactory,
) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    assert _hand_back(sessions, claim) == JobState.queued
    job = job_of(sessions, job_id)
    assert (job.state, job.strikes) == (JobState.queued, 1)


def test_a_transient_failure_on_the_last_strike_fails_the_job(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id, max_attempts=1)
    assert claim is not None
    assert _hand_back(sessions, claim, max_attempts=1) == JobState.failed
    assert job_of(sessions, job_id).state == JobState.failed


def _cancel(sessions: SessionFactory, job_id: uuid.UUID) -> None:
    with sessions() as session:
        cancel_batch(session=session, batch_id=job_of(sessions, job_id).batch_id)


def test_reap_cancels_an_expired_job_of_a_cancelled_batch(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    _claim(sessions, job_id)
    _cancel(sessions, job_id)
    _expire(sessions, job_id)
    assert _reap(sessions) == []  # not requeued: no claim could ever take it
    assert job_of(sessions, job_id).state == JobState.cancelled


def test_a_hand_back_cancels_a_job_of_a_cancelled_batch(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    _cancel(sessions, job_id)
    assert _hand_back(sessions, claim) == JobState.cancelled
    assert job_of(sessions, job_id).state == JobState.cancelled


def test_store_with_a_superseded_claim_writes_nothing(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    stale = _claim(sessions, job_id)
    assert stale is not None
    _expire(sessions, job_id)
    _claim(sessions, job_id, worker="w2")
    assert not _store(sessions, stale)
    with sessions() as session:
        assert count_rows(session, TraceNode, job_id) == 0
        assert session.get(JobCost, job_id) is None
    assert job_of(sessions, job_id).state == JobState.running


def test_storing_twice_keeps_one_copy(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    assert _store(sessions, claim)
    assert not _store(sessions, claim)
    with sessions() as session:
        assert count_rows(session, TraceNode, job_id) == 3
        assert count_rows(session, Candidate, job_id) == 2
    assert job_of(sessions, job_id).state == JobState.succeeded


def _statements_while(db_url: str, action: Callable[[], object]) -> list[str]:
    """The statements SQLAlchemy sent while action ran (COPY goes by the driver: unseen)."""
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(get_engine(db_url), "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(get_engine(db_url), "before_cursor_execute", record)
    return statements


def test_a_small_result_is_one_statement_of_its_own(
    sessions: SessionFactory, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    alone: list[str] = []

    def spy(session: Session, sql: str, params: dict[str, object]) -> object:
        alone.append(sql)
        return execute_alone(session, sql, params)

    monkeypatch.setattr(result_store, "execute_alone", spy)
    in_session = _statements_while(db_url, lambda: _store(sessions, claim, nodes=20))
    assert in_session == [] and len(alone) == 1 and 'INSERT INTO "trace_node"' in alone[0]
    with sessions() as session:
        assert count_rows(session, TraceNode, job_id) == 20


def test_a_10000_node_trace_goes_by_copy_beside_one_statement(
    sessions: SessionFactory, db_url: str
) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    statements = _statements_while(db_url, lambda: _store(sessions, claim, nodes=10_000))
    assert len(statements) == 1 and 'INSERT INTO "trace_node"' not in statements[0]
    with sessions() as session:
        assert count_rows(session, TraceNode, job_id) == 10_000


def test_a_large_trace_of_a_job_no_longer_ours_writes_nothing(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    first = _claim(sessions, job_id)
    assert first is not None
    _expire(sessions, job_id)
    assert _claim(sessions, job_id, worker="w2") is not None
    assert not _store(sessions, first, nodes=COPY_MIN_ROWS + 10)
    with sessions() as session:
        assert count_rows(session, TraceNode, job_id) == 0


@pytest.mark.parametrize("nodes", [20, COPY_MIN_ROWS + 10])  # one statement; COPY
def test_rows_stored_behind_the_fences_back_are_kept_not_doubled(
    sessions: SessionFactory, nodes: int
) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    with sessions() as session:  # a row no attempt of ours wrote: a plain insert clashes
        session.add(TraceNode(job_id=job_id, node_id=5, depth=0, kind="step",
                              status="expanded", text="already here"))
        session.commit()
    assert _store(sessions, claim, nodes=nodes)
    with sessions() as session:
        assert count_rows(session, TraceNode, job_id) == nodes
        node = session.get(TraceNode, (job_id, 5))
        assert node is not None and node.text == "already here"
    assert job_of(sessions, job_id).state == JobState.succeeded


def test_scores_json_cannot_write_are_stored(sessions: SessionFactory) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    result = synthetic_result()
    result.trace.nodes[1].step_score = float("nan")
    result.candidates[0].score = float("-inf")
    with sessions() as session:
        assert store_search_result(session=session, claim=claim, gold="3", result=result,
                            cost=zero_cost())
        node = session.get(TraceNode, (job_id, 1))
        candidate = session.get(Candidate, (job_id, 0))
        assert node is not None and math.isnan(node.step_score or 0.0)
        assert candidate is not None and candidate.score == float("-inf")


def test_a_nul_in_model_output_is_stored_as_a_replacement_character(
    sessions: SessionFactory,
) -> None:
    [job_id] = make_batch(sessions)
    claim = _claim(sessions, job_id)
    assert claim is not None
    result = synthetic_result()
    result.trace.nodes[1].text = "a\x00b"  # Postgres text columns refuse NUL
    with sessions() as session:
        assert store_search_result(session=session, claim=claim, gold="3", result=result,
                            cost=zero_cost())
        node = session.get(TraceNode, (job_id, 1))
        assert node is not None and node.text == "a\ufffdb"


def test_a_batch_without_problems_is_refused_and_nothing_is_stored(
    sessions: SessionFactory,
) -> None:
    used_up = iter([ProblemIn(line=1, problem="What is 2 + 2?")])
    list(used_up)  # a stream read once already, as api.records.to_problems gives them
    with sessions() as session, pytest.raises(ValueError, match="at least one problem"):
        create_batch(session=session, owner="tester", config={"strategy": "majority"},
                     problems=used_up)
    with sessions() as session:
        assert session.exec(select(func.count()).select_from(Batch)).one() == 0
        assert session.exec(select(func.count()).select_from(Job)).one() == 0
