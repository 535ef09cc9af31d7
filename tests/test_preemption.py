"""Preemption through process_job into Postgres, on the ground-truth engine: a job lost
mid-search resumes from its checkpoint and stores the uninterrupted result with what was
lost counted apart; the blame rule (stalls, running alone, strikes); a drain and an engine
outage hand jobs back uncharged; failed jobs run again with their history kept."""

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from tests.utils.jobs import job_of
from ttcq.db.attempts import attempt_history, failures_by_reason, retry_failed
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.jobs import claim_job, reap_expired
from ttcq.db.models import Candidate, Job, JobCheckpoint, JobCost, JobState, TraceNode, utcnow
from ttcq.db.workers import live_workers
from ttcq.worker.crew import Crew
from ttcq.worker.engines.base import (
    Completion,
    EngineError,
    GenerationRequest,
    TransientEngineError,
)
from ttcq.worker.leases import JobYielded, Lease, LeaseBoard
from ttcq.worker.search.config import make_config
from ttcq.worker.service import Requeued, SessionFactory, process_job

BEAM = {"strategy": "beam_search", "n": 4, "beam_width": 2, "verifier": "self_judge"}
LEASE = 30


class WorkerDied(BaseException):
    """The process died mid-call: nothing in the worker catches this."""


class HookedEngine(GroundTruthEngine):
    """TEST DOUBLE: the ground-truth engine, running hooks[k] as its k-th generate call
    starts (1-based), and unreachable while `down` is set."""

    def __init__(self, hooks: dict[int, Callable[[], None]] | None = None):
        super().__init__()
        self.hooks, self.calls, self.down = hooks or {}, 0, False
        self.tokens: list[int] = []  # prompt + completion tokens of each generate call

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        self.calls += 1
        if self.down:
            raise TransientEngineError("ground truth: unreachable (Connection refused)")
        if hook := self.hooks.get(self.calls):
            hook()
        out = super().generate(requests)
        self.tokens.append(sum(c.prompt_tokens + c.completion_tokens for s in out for c in s))
        return out

    def health_check(self) -> None:
        if self.down:
            raise EngineError("ground truth: unreachable")


def _batch(sessions: SessionFactory, count: int = 1, **config: Any) -> list[uuid.UUID]:
    rows = [ProblemIn(line=i + 1, problem=r["problem"], gold=r["answer"])
            for i, r in enumerate(make_dataset(count, seed=5))]
    with sessions() as session:
        _, ids = create_batch(session=session, owner="tester", problems=rows,
                              config=make_config(**{**BEAM, **config}).model_dump())
    return ids


def _crew(sessions: SessionFactory) -> Crew:
    """A worker's crew with a board of its own (a drained board stays drained)."""
    return Crew(LeaseBoard(sessions, LEASE, 0.05), sessions, name="test-worker/1")


def _process(sessions: SessionFactory, job_id: uuid.UUID, engine: GroundTruthEngine,
             crew: Crew | None = None, max_attempts: int = 3) -> str:
    return process_job(sessions=sessions, job_id=job_id, engine=engine, worker_name="w",
                       lease_seconds=LEASE, max_attempts=max_attempts, check_seconds=0.05,
                       crew=crew or _crew(sessions))


def _die(sessions: SessionFactory, job_id: uuid.UUID, engine: GroundTruthEngine) -> None:
    """Run the job until its engine call kills the worker, then let its lease expire and
    a reaper take it back, as after a SIGKILL."""
    with pytest.raises(WorkerDied):
        _process(sessions, job_id, engine)
    with sessions() as session:
        session.exec(update(Job).where(col(Job.id) == job_id)
                     .values(lease_until=utcnow() - timedelta(seconds=1)))
        assert reap_expired(session=session, max_attempts=3) == [job_id]
        session.commit()


def _died() -> None:
    raise WorkerDied()


def _stored(sessions: SessionFactory, job_id: uuid.UUID) -> tuple[Any, ...]:
    with sessions() as session:
        nodes = session.exec(select(TraceNode.node_id, TraceNode.parent_id, TraceNode.text,
                                    TraceNode.status, TraceNode.step_score)
                             .where(TraceNode.job_id == job_id)
                             .order_by(col(TraceNode.node_id))).all()
        candidates = session.exec(select(Candidate.idx, Candidate.text, Candidate.selected)
                                  .where(Candidate.job_id == job_id)
                                  .order_by(col(Candidate.idx))).all()
    return list(nodes), list(candidates), job_of(sessions, job_id).answer


def _cost(sessions: SessionFactory, job_id: uuid.UUID) -> JobCost:
    with sessions() as session:
        cost = session.get(JobCost, job_id)
        assert cost is not None
        return cost


def _checkpoint_rows(sessions: SessionFactory, job_id: uuid.UUID) -> int:
    with sessions() as session:
        return session.exec(select(func.count()).select_from(JobCheckpoint)
                            .where(JobCheckpoint.job_id == job_id)).one()


def test_a_job_lost_mid_search_resumes_where_it_was_and_counts_the_lost_call(
    sessions: SessionFactory,
) -> None:
    [whole] = _batch(sessions)
    [killed] = _batch(sessions)
    uninterrupted = HookedEngine()
    assert _process(sessions, whole, uninterrupted) == "succeeded"
    _die(sessions, killed, HookedEngine({3: _died}))  # in its third step's generation
    assert _checkpoint_rows(sessions, killed) > 0
    resumed = HookedEngine()
    assert _process(sessions, killed, resumed) == "succeeded"
    assert _stored(sessions, killed) == _stored(sessions, whole)
    reference, cost = _cost(sessions, whole), _cost(sessions, killed)
    assert (cost.prompt_tokens, cost.completion_tokens, cost.verifier_tokens) == (
        reference.prompt_tokens, reference.completion_tokens, reference.verifier_tokens)
    # Two generations and two scorings were replayed; the third generation, lost with the
    # worker, was made again: its tokens are the waste.
    assert cost.resumed_calls == 4
    assert resumed.calls == uninterrupted.calls - 2
    assert cost.wasted_tokens == resumed.tokens[0] > 0
    job = job_of(sessions, killed)
    assert (job.attempts, job.strikes, job.stalls) == (2, 0, 0)
    with sessions() as session:
        [loss] = attempt_history(session=session, job_id=killed)
    assert (loss.outcome, loss.charge, loss.progress) == ("lost", "none", True)
    assert _checkpoint_rows(sessions, killed) == 0  # a stored result needs none


def _history(sessions: SessionFactory, job_id: uuid.UUID) -> list[tuple[str, str, bool]]:
    with sessions() as session:
        return [(a.outcome, a.charge, a.progress)
                for a in attempt_history(session=session, job_id=job_id)]


def test_a_job_lost_with_others_before_any_progress_stalls_then_runs_alone_and_is_charged(
    sessions: SessionFactory,
) -> None:
    [job_id] = _batch(sessions)
    for _ in range(2):  # lost with the crowd before its first checkpoint: free
        _die(sessions, job_id, HookedEngine({1: _died}))
    assert (job_of(sessions, job_id).strikes, job_of(sessions, job_id).stalls) == (0, 2)
    seen_alone: list[bool] = []

    def alone_then_die() -> None:
        seen_alone.append(job_of(sessions, job_id).alone)
        raise WorkerDied()

    for strike in (1, 2):
        _die(sessions, job_id, HookedEngine({1: alone_then_die}))
        assert job_of(sessions, job_id).strikes == strike
    with pytest.raises(WorkerDied):
        _process(sessions, job_id, HookedEngine({1: alone_then_die}))
    with sessions() as session:
        session.exec(update(Job).where(col(Job.id) == job_id)
                     .values(lease_until=utcnow() - timedelta(seconds=1)))
        assert reap_expired(session=session, max_attempts=3) == []  # the third strike
        session.commit()
    job = job_of(sessions, job_id)
    assert seen_alone == [True, True, True]
    assert (job.state, job.failure) == (JobState.failed, "worker_lost")
    assert "3 times while this job ran alone" in (job.error or "")
    assert _history(sessions, job_id) == [("lost", "stall", False)] * 2 + [
        ("lost", "strike", False)] * 3


def test_a_job_that_progressed_is_never_charged_for_a_loss(sessions: SessionFactory) -> None:
    [job_id] = _batch(sessions)
    for _ in range(3):  # each run makes one more step, then dies in the next
        _die(sessions, job_id, HookedEngine({2: _died}))
    assert _process(sessions, job_id, HookedEngine()) == "succeeded"
    job = job_of(sessions, job_id)
    assert (job.strikes, job.stalls, job.attempts) == (0, 0, 4)
    assert _history(sessions, job_id) == [("lost", "none", True)] * 3


def test_a_job_that_must_run_alone_waits_for_the_others_to_yield(
    sessions: SessionFactory,
) -> None:
    [job_id, other_id] = _batch(sessions, count=2)
    with sessions() as session:
        session.exec(update(Job).where(col(Job.id) == job_id).values(stalls=2))
        session.commit()
        other = claim_job(session=session, job_id=other_id, worker="w", lease_seconds=LEASE,
                          max_attempts=3)
    assert other is not None
    crew = _crew(sessions)
    outcome: list[str] = []
    with Lease(crew.board, other, None) as running:
        thread = threading.Thread(target=lambda: outcome.append(
            _process(sessions, job_id, HookedEngine(), crew=crew)))
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not outcome  # waiting for solitude
        assert crew.intake.paused  # and taking no messages meanwhile
        with pytest.raises(JobYielded, match="runs alone"):
            running.check()  # the other search is told at its next step boundary
    thread.join(30)
    assert outcome == ["succeeded"] and not crew.intake.paused
    with sessions() as session:
        assert session.exec(select(Job.alone).where(Job.id == job_id)).one()


def test_a_drain_hands_the_job_back_at_its_next_step_and_loses_nothing(
    sessions: SessionFactory,
) -> None:
    [whole] = _batch(sessions)
    [drained] = _batch(sessions)
    assert _process(sessions, whole, HookedEngine()) == "succeeded"
    crew = _crew(sessions)
    with pytest.raises(Requeued) as requeued:
        _process(sessions, drained, HookedEngine({2: lambda: crew.drain("SIGTERM")}), crew)
    assert not requeued.value.backoff  # straight back to the queue
    job = job_of(sessions, drained)
    assert (job.state, job.strikes, job.stalls) == (JobState.queued, 0, 0)
    assert _history(sessions, drained) == [("yielded", "none", True)]
    assert _process(sessions, drained, HookedEngine()) == "succeeded"
    assert _stored(sessions, drained) == _stored(sessions, whole)
    assert _cost(sessions, drained).wasted_tokens == 0  # a yield is at a step boundary


def test_an_engine_outage_hands_jobs_back_uncharged_and_waits_for_the_engine(
    sessions: SessionFactory,
) -> None:
    fresh, started = _batch(sessions, count=2)
    engine = HookedEngine()
    crew = _crew(sessions)
    crew.watch_engine(engine)
    assert crew.watch is not None
    crew.watch.probe_every = 0.05
    crew.started()

    def server_killed() -> None:
        engine.down = True
        raise TransientEngineError("ground truth: unreachable (Connection refused)")

    engine.hooks = {2: server_killed}
    with pytest.raises(Requeued):
        _process(sessions, started, engine, crew)
    assert crew.intake.paused and crew.watch.down
    with sessions() as session:
        [state] = live_workers(session=session, seen_within=60)
    assert (state.state, state.outages) == ("paused", 1)
    assert "engine unreachable" in state.reason
    with pytest.raises(Requeued):  # a job taken meanwhile goes back before any progress
        _process(sessions, fresh, engine, crew)
    assert _history(sessions, started) == [("outage", "none", True)]
    assert _history(sessions, fresh) == [("outage", "stall", False)]
    assert job_of(sessions, started).strikes == job_of(sessions, fresh).strikes == 0
    engine.down = False
    deadline = utcnow() + timedelta(seconds=10)
    while crew.watch.down and utcnow() < deadline:
        time.sleep(0.05)
    assert not crew.intake.paused and not crew.watch.down
    with sessions() as session:
        [state] = live_workers(session=session, seen_within=60)
    assert state.state == "running" and "engine back after" in state.reason
    for job_id in (started, fresh):
        assert _process(sessions, job_id, engine, crew) == "succeeded"


def test_a_transient_error_while_the_engine_serves_others_is_the_jobs_own(
    sessions: SessionFactory,
) -> None:
    [job_id] = _batch(sessions)

    def refused_for_this_job() -> None:
        raise TransientEngineError("ground truth: HTTP 503 for this request only")

    for strike in (1, 2):
        engine = HookedEngine({1: refused_for_this_job})
        crew = _crew(sessions)
        crew.watch_engine(engine)  # the health check passes: the engine serves others
        with pytest.raises(Requeued) as requeued:
            _process(sessions, job_id, engine, crew)
        assert requeued.value.backoff
        assert job_of(sessions, job_id).strikes == strike
    engine = HookedEngine({1: refused_for_this_job})
    assert _process(sessions, job_id, engine) == "failed"
    job = job_of(sessions, job_id)
    assert (job.state, job.failure) == (JobState.failed, "transient")
    assert [h[:2] for h in _history(sessions, job_id)] == [("transient", "strike")] * 3


def test_failed_jobs_run_again_with_their_history_kept(sessions: SessionFactory) -> None:
    ok, bad = _batch(sessions, count=2)

    def refused() -> None:
        raise EngineError("ground truth: HTTP 400: prompt too long")

    assert _process(sessions, ok, HookedEngine()) == "succeeded"
    assert _process(sessions, bad, HookedEngine({1: refused})) == "failed"
    batch_id = job_of(sessions, bad).batch_id
    with sessions() as session:
        assert failures_by_reason(session=session, batch_id=batch_id) == {"engine": 1}
        assert retry_failed(session=session, batch_id=batch_id) == [bad]
    job = job_of(sessions, bad)
    assert (job.state, job.strikes, job.error, job.failure) == (JobState.queued, 0, None, None)
    assert _process(sessions, bad, HookedEngine()) == "succeeded"
    with sessions() as session:
        [failure] = attempt_history(session=session, job_id=bad)
        assert failures_by_reason(session=session, batch_id=batch_id) == {}
    assert failure.outcome == "failed"
    assert failure.message == "ground truth: HTTP 400: prompt too long"


def test_progress_starts_the_count_of_stalls_again(sessions: SessionFactory) -> None:
    [job_id] = _batch(sessions)
    _die(sessions, job_id, HookedEngine({1: _died}))  # no progress, among others: a stall
    assert job_of(sessions, job_id).stalls == 1
    _die(sessions, job_id, HookedEngine({2: _died}))  # one step done first
    assert job_of(sessions, job_id).stalls == 0
    _die(sessions, job_id, HookedEngine({1: _died}))
    assert (job_of(sessions, job_id).stalls, job_of(sessions, job_id).alone) == (1, False)


def test_a_second_job_that_must_run_alone_yields_and_leaves_the_intake_paused(
    sessions: SessionFactory,
) -> None:
    first_id, second_id = _batch(sessions, count=2)
    with sessions() as session:
        first, second = (claim_job(session=session, job_id=j, worker="w", lease_seconds=LEASE,
                                   max_attempts=3) for j in (first_id, second_id))
    assert first is not None and second is not None
    crew = _crew(sessions)
    with Lease(crew.board, first, None) as alone, crew.alone(alone):
        assert crew.intake.paused
        with Lease(crew.board, second, None) as other:
            with pytest.raises(JobYielded, match="another job of this worker runs alone"):
                with crew.alone(other):
                    pass
            assert crew.intake.paused  # the first still runs alone
    assert not crew.intake.paused


def test_a_job_lost_before_its_first_checkpoint_counts_its_first_call_as_wasted(
    sessions: SessionFactory,
) -> None:
    [job_id] = _batch(sessions)
    _die(sessions, job_id, HookedEngine({1: _died}))
    again = HookedEngine()
    assert _process(sessions, job_id, again) == "succeeded"
    cost = _cost(sessions, job_id)
    assert cost.resumed_calls == 0 and cost.wasted_tokens == again.tokens[0] > 0
