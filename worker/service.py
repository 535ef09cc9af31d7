"""Run one job end to end: claim its row, search, store the result. The same path serves
the Celery task and the embedded `ttcq run`; nothing here knows about Celery."""

import logging
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from db.jobs import Claim, claim_job, finish_job, release_job
from db.ledger import batch_spend
from db.models import JobCostBase, JobState
from db.results import store_result
from worker.engines.base import Engine, EngineInfo, TransientEngineError
from worker.engines.metered import MeteredEngine
from worker.leases import JobCancelled, JobTimedOut, Lease, lease_board
from worker.search.config import SearchConfig
from worker.search.policy import allowance
from worker.search.registry import run_search
from worker.search.types import Problem, SearchResult
from worker.verifiers.factory import ServedVerifiers, make_verifier

Outcome = Literal["succeeded", "failed", "cancelled", "skipped", "lost"]
SessionFactory = Callable[[], AbstractContextManager[Session]]
# How often a running job touches its row (lease renewal and the cancellation check).
CHECK_INTERVAL_SECONDS = 1.0

logger = logging.getLogger(__name__)


def cost_record(result: SearchResult, wall_seconds: float, info: EngineInfo) -> JobCostBase:
    gen, ver = result.generation, result.verification
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
        engine_seconds=gen.seconds + ver.seconds,
        # A forward pass costs about 2 FLOPs per parameter per token actually computed.
        flops=2.0 * info.n_params * computed,
        engine_model=info.model[:512],
        seeded=info.honours_seeds,
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
) -> Outcome:
    """Claim and solve one job. Raises TransientEngineError (job released to the queue)
    when the engine failed in a way worth retrying and attempts are left. A search still
    running after time_limit seconds stops at its next engine call and fails the job."""
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker=worker_name,
                          lease_seconds=lease_seconds, max_attempts=max_attempts)
    if claim is None:
        return "skipped"
    problem = Problem(claim.problem, claim.gold, claim.custom_id)
    lease = hold_lease(sessions, claim, lease_seconds, min(check_seconds, lease_seconds / 3),
                         time_limit)
    # Verifier calls go through the same guard: they cost as much as generation.
    guarded = MeteredEngine(engine, lease.check)
    started = time.perf_counter()
    try:
        with lease:
            config = _with_allowance(sessions, claim, SearchConfig(**claim.config))
            verifiers = served.guarded(lease.check) if served else None
            verifier = make_verifier(config.verifier, guarded, verifiers)
            result = run_search(problem, config, guarded, verifier)
    except JobCancelled:
        return _finish(sessions, claim, JobState.cancelled, "cancelled while running")
    except JobTimedOut:
        return _finish(sessions, claim, JobState.failed, f"time limit of {time_limit} s exceeded")
    except TransientEngineError as error:
        if _release(sessions, claim, error, max_attempts):
            raise
        return "failed"
    except (OperationalError, InterfaceError):
        raise  # the database is away (the batch's ledger): as below, the task retries
    except Exception:  # a bug or a bad problem: record it on the job, do not retry
        return _finish(sessions, claim, JobState.failed, traceback.format_exc(limit=8))
    cost = cost_record(result, time.perf_counter() - started, engine.info)
    try:
        with sessions() as session:
            stored = store_result(session=session, claim=claim, gold=problem.gold,
                                  result=result, cost=cost)
    except (OperationalError, InterfaceError):
        raise  # the database is away: the task retries; the lease lets another worker in
    except Exception:  # a result that cannot be stored would fail on every attempt
        return _finish(sessions, claim, JobState.failed, traceback.format_exc(limit=8))
    return "succeeded" if stored else "lost"


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


def _release(
    sessions: SessionFactory, claim: Claim, error: Exception, max_attempts: int
) -> bool:
    with sessions() as session:
        return release_job(session=session, claim=claim, error=f"transient: {error}",
                           max_attempts=max_attempts)


def _finish(sessions: SessionFactory, claim: Claim, state: JobState, error: str) -> Outcome:
    with sessions() as session:
        done = finish_job(session=session, claim=claim, state=state, error=error)
        session.commit()
    return state.value if done else "lost"  # type: ignore[return-value]
