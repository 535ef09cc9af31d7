"""Run one job end to end: claim its row, search, store the result. The same path serves
the Celery task and the embedded `ttcq run`; nothing here knows about Celery."""

import logging
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Literal

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from ttcq.db.attempts import fail_job, hand_back, mark_alone
from ttcq.db.blame import must_run_alone
from ttcq.db.checkpoints import drop_checkpoint, load_checkpoint, save_checkpoint
from ttcq.db.jobs import Claim, ClaimedJob, claim_job, finish_job
from ttcq.db.labels import source_solutions
from ttcq.db.ledger import batch_spend
from ttcq.db.models import JobCostBase, JobState
from ttcq.worker.crew import Crew
from ttcq.worker.engines.base import Engine, EngineError, EngineInfo, TransientEngineError
from ttcq.worker.engines.metered import MeteredEngine
from ttcq.worker.journal import FIRST_CALL, Call, Journal, decode_calls, encode_calls
from ttcq.worker.leases import JobCancelled, JobTimedOut, JobYielded, Lease, lease_board
from ttcq.worker.outage import EngineWatch
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.policy import allowance
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.stored import store_search_result
from ttcq.worker.verifiers.factory import ServedVerifiers, make_verifier

Outcome = Literal["succeeded", "failed", "cancelled", "skipped", "lost", "requeued"]
HandBack = Literal["yielded", "outage", "transient"]
SessionFactory = Callable[[], AbstractContextManager[Session]]
# How often a running job touches its row (lease renewal and the cancellation check).
CHECK_INTERVAL_SECONDS = 1.0

logger = logging.getLogger(__name__)


def cost_record(result: SearchResult, wall_seconds: float, info: EngineInfo,
                journal: Journal | None = None) -> JobCostBase:
    """What the job cost: its result's calls (a resumed search's replayed ones included:
    they were paid for once), and apart, what interruptions wasted."""
    gen, ver = result.generation, result.verification
    journal = journal or Journal()
    wasted = journal.wasted
    computed = (gen.prompt_tokens - gen.cached_tokens + gen.completion_tokens
                + ver.prompt_tokens - ver.cached_tokens + ver.completion_tokens)
    return JobCostBase(
        prompt_tokens=gen.prompt_tokens,
        cached_tokens=gen.cached_tokens,
        completion_tokens=gen.completion_tokens,
        verifier_tokens=ver.prompt_tokens + ver.completion_tokens,
        verifier_cached_tokens=ver.cached_tokens,
        engine_calls=gen.calls,
        verifier_calls=ver.calls,
        wall_seconds=wall_seconds,
        engine_seconds=gen.seconds + ver.seconds + journal.replayed_seconds,
        # A forward pass costs about 2 FLOPs per parameter per token actually computed.
        flops=2.0 * info.n_params * computed,
        engine_model=info.model[:512],
        seeded=info.honours_seeds,
        wasted_tokens=wasted.prompt_tokens + wasted.completion_tokens,
        wasted_cached_tokens=wasted.cached_tokens,
        resumed_calls=journal.replayed,
        thinking_tokens=result.thinking_tokens,
    )


def hold_lease(sessions: SessionFactory, claim: Claim, lease_seconds: int, every: float,
               time_limit: float | None = None) -> Lease:
    """The lease of one running job, renewed with every other job's of this process."""
    return Lease(lease_board(sessions, lease_seconds, every), claim, time_limit)


def process_job(
    *,
    sessions: SessionFactory,
    job_id: uuid.UUID,
    engine: Engine,
    worker_name: str,
    lease_seconds: int,
    max_attempts: int,
    check_seconds: float = CHECK_INTERVAL_SECONDS,
    served: ServedVerifiers | None = None,
    time_limit: float | None = None,
    crew: Crew | None = None,
) -> Outcome:
    """Claim and solve one job, resuming its search from its checkpoint if an earlier
    attempt saved one. Raises Requeued when the job went back to the queue (its message
    must be sent again). A search still running after time_limit seconds stops at its
    next engine call and fails the job."""
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker=worker_name,
                          lease_seconds=lease_seconds, max_attempts=max_attempts)
    if claim is None:
        return "skipped"
    crew = crew or Crew(lease_board(sessions, lease_seconds,
                                    min(check_seconds, lease_seconds / 3)), sessions)
    run = Attempt(sessions, claim, worker_name, max_attempts)
    lease = Lease(crew.board, claim, time_limit)
    try:
        with lease, run.alone_if_due(crew, lease):
            result = run.search(engine, served, lease)
    except (OperationalError, InterfaceError):
        raise  # the database is away (the batch's ledger): the task retries
    except Exception as error:
        return run.end(error, crew.watch, time_limit)
    return run.store(result, engine.info)


class Requeued(Exception):  # noqa: N818 - a signal to the task, not an error
    """The job is queued again: its message must be sent again (after backoff seconds
    when the failure was its own)."""

    def __init__(self, backoff: bool):
        super().__init__("requeued")
        self.backoff = backoff


class Attempt:
    """One attempt of a claimed job: its search (resumed from a checkpoint if there is
    one, checkpointed as it goes) and how the attempt ends."""

    def __init__(self, sessions: SessionFactory, claim: ClaimedJob, worker: str,
                 max_attempts: int):
        self.sessions, self.claim, self.worker = sessions, claim, worker
        self.max_attempts = max_attempts
        self.started = time.perf_counter()
        self.alone = False
        self.journal = Journal()
        self.elapsed_before = 0.0  # the search's seconds in earlier attempts

    @contextmanager
    def alone_if_due(self, crew: Crew, lease: Lease) -> Iterator[None]:
        """A job that stalled too often runs with no other in its worker (db.blame)."""
        if not must_run_alone(self.claim.stalls):
            yield
            return
        with crew.alone(lease):
            with self.sessions() as session:
                self.alone = mark_alone(session=session, claim=self.claim)
            yield

    def end(self, error: Exception, watch: EngineWatch | None,
            time_limit: float | None) -> Outcome:
        """How an attempt that raised ends: cancelled, failed, or handed back (Requeued)."""
        if isinstance(error, JobCancelled):
            return self.finish(JobState.cancelled, "cancelled while running")
        if isinstance(error, JobTimedOut):
            return self.fail("time_limit", f"time limit of {time_limit} s exceeded")
        if isinstance(error, JobYielded):
            return self.hand_back(error.outcome, error.reason)
        if isinstance(error, TransientEngineError):
            down = watch is not None and watch.is_down(error)
            return self.hand_back("outage" if down else "transient", f"transient: {error}")
        if isinstance(error, EngineError):  # the server refused this job's request
            return self.fail("engine", str(error))
        # A bug or a bad problem: recorded on the job, not retried.
        trace = "".join(traceback.format_exception(error, limit=8))
        return self.fail("search", trace)

    def search(self, engine: Engine, served: ServedVerifiers | None, lease: Lease
               ) -> SearchResult:
        claim = self.claim
        self.journal = self._journal(lease)
        # Verifier calls go through the same guard: they cost as much as generation.
        guarded = self.journal.engine(MeteredEngine(engine, lease.check))
        config = _with_allowance(self.sessions, claim, SearchConfig(**claim.config))
        verifiers = served.guarded(lease.check) if served else None
        verifier = self.journal.verifier(make_verifier(config.verifier, guarded, verifiers))
        problem = Problem(claim.problem, claim.gold, claim.custom_id, self._solutions(config))
        return run_search(problem, config, guarded, verifier)

    def _solutions(self, config: SearchConfig) -> tuple[str, ...]:
        """A label job's solutions: the finished candidates of the job it labels."""
        if self.claim.source_job_id is None:
            return ()
        with self.sessions() as session:
            texts = source_solutions(session=session, job_id=self.claim.source_job_id,
                                     limit=config.n)
        if not texts:
            raise ValueError(f"job {self.claim.source_job_id} has no finished candidate to label")
        return tuple(texts)

    def _journal(self, lease: Lease) -> Journal:
        """The search's journal: what an earlier attempt recorded, and a save at every
        step boundary. If the last attempt was lost, the call it was making was lost with
        it: the one its last save named, or, with no checkpoint, its first."""
        recorded: list[Call] = []
        lost_call = FIRST_CALL if self.claim.after_loss else None
        if self.claim.resumable:
            with self.sessions() as session:
                stored = load_checkpoint(session=session, job_id=self.claim.job_id)
            if stored is not None:
                recorded = [call for blob in stored.blobs for call in decode_calls(blob)]
                lost_call = stored.next_key if self.claim.after_loss else None
                self.elapsed_before = stored.elapsed
        return Journal(recorded, save=self._save, guard=lease.check, lost_call=lost_call)

    def _save(self, calls: list[Call], first: int, next_key: str) -> None:
        with self.sessions() as session:
            saved = save_checkpoint(
                session=session, claim=self.claim, seq=first, calls=len(calls),
                data=encode_calls(calls), next_key=next_key, elapsed=self._elapsed(),
                rewrite=first == 0 and self.claim.resumable)
        if not saved:
            raise JobCancelled()  # the job is no longer ours

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def progress(self) -> bool:
        return self.journal.saves > 0

    def store(self, result: SearchResult, info: EngineInfo) -> Outcome:
        cost = cost_record(result, self._elapsed(), info, self.journal)
        problem_gold = self.claim.gold
        try:
            with self.sessions() as session:
                stored = store_search_result(session=session, claim=self.claim,
                                             gold=problem_gold, result=result, cost=cost)
                if stored and (self.journal.saves or self.claim.resumable):
                    drop_checkpoint(session=session, job_id=self.claim.job_id)
        except (OperationalError, InterfaceError):
            raise  # the database is away: the task retries; the lease lets another worker in
        except Exception:  # a result that cannot be stored would fail on every attempt
            return self.fail("store", traceback.format_exc(limit=8))
        return "succeeded" if stored else "lost"

    def hand_back(self, outcome: HandBack, message: str) -> Outcome:
        """Back to the queue, charged by the blame rule (db.blame): raises Requeued; or
        the job failed (out of strikes), or its batch was cancelled meanwhile."""
        with self.sessions() as session:
            state = hand_back(session=session, claim=self.claim, outcome=outcome,
                              message=message, progress=self.progress, alone=self.alone,
                              max_attempts=self.max_attempts, worker=self.worker)
        if state == JobState.queued:
            raise Requeued(backoff=outcome == "transient")
        return "lost" if state is None else state.value  # type: ignore[return-value]

    def fail(self, failure: str, message: str) -> Outcome:
        with self.sessions() as session:
            done = fail_job(session=session, claim=self.claim, failure=failure,
                            message=message, progress=self.progress, worker=self.worker)
        return "failed" if done else "lost"

    def finish(self, state: JobState, error: str) -> Outcome:
        with self.sessions() as session:
            done = finish_job(session=session, claim=self.claim, state=state, error=error)
            session.commit()
        return state.value if done else "lost"  # type: ignore[return-value]


def _with_allowance(sessions: SessionFactory, claim: Claim, config: SearchConfig) -> SearchConfig:
    """A job of a batch with a token budget gets the tokens per problem its batch has left
    (worker.search.policy.allowance), read from the stored costs as it starts."""
    if config.strategy != "compute_optimal" or config.batch_tokens is None:
        return config
    with sessions() as session:
        spend = batch_spend(session=session, job_id=claim.job_id)
    left = allowance(config.compute_policy, batch_tokens=config.batch_tokens,
                     spent=spend.spent, finished=spend.finished, running=spend.running,
                     total=spend.total, n=config.n)
    return config.model_copy(update={"batch_allowance": left})
