"""Run one job end to end: claim its row, search, store the result. The same path serves
the Celery task and the embedded `ttcq run`; nothing here knows about Celery."""

import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal

from sqlmodel import Session

from db.batches import get_batch
from db.jobs import Claim, claim_job, finish_job, get_job, release_job, renew_lease
from db.models import JobState
from db.results import CostRecord, store_result
from worker.engines.base import Engine, TransientEngineError
from worker.engines.metered import MeteredEngine
from worker.search.config import SearchConfig
from worker.search.registry import run_search
from worker.search.types import Problem, SearchResult
from worker.verifiers.factory import make_verifier

Outcome = Literal["succeeded", "failed", "cancelled", "skipped", "lost"]
SessionFactory = Callable[[], AbstractContextManager[Session]]
# How often a running job touches its row (lease renewal and the cancellation check).
CHECK_INTERVAL_SECONDS = 1.0


class JobCancelled(Exception):
    """The job's batch was cancelled, or the job was handed to another worker."""


def cost_record(result: SearchResult, wall_seconds: float, n_params: int) -> CostRecord:
    gen, ver = result.generation, result.verification
    computed = (gen.prompt_tokens - gen.cached_tokens + gen.completion_tokens
                + ver.prompt_tokens - ver.cached_tokens + ver.completion_tokens)
    return CostRecord(
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
        flops=2.0 * n_params * computed,
    )


def _lease_keeper(
    sessions: SessionFactory, claim: Claim, lease_seconds: int
) -> Callable[[], None]:
    last = 0.0

    def before_engine_call() -> None:
        nonlocal last
        if time.monotonic() - last < CHECK_INTERVAL_SECONDS:
            return
        with sessions() as session:
            if not renew_lease(session=session, claim=claim, lease_seconds=lease_seconds):
                raise JobCancelled()
        last = time.monotonic()

    return before_engine_call


def process_job(
    *,
    sessions: SessionFactory,
    job_id: uuid.UUID,
    engine: Engine,
    worker_name: str,
    lease_seconds: int,
    max_attempts: int,
) -> Outcome:
    """Claim and solve one job. Raises TransientEngineError (job released to the queue)
    when the engine failed in a way worth retrying."""
    with sessions() as session:
        claim = claim_job(
            session=session, job_id=job_id, worker=worker_name,
            lease_seconds=lease_seconds, max_attempts=max_attempts,
        )
        if claim is None:
            return "skipped"
        job = get_job(session=session, job_id=job_id)
        batch = get_batch(session=session, batch_id=job.batch_id) if job else None
        assert job is not None and batch is not None
        problem = Problem(job.problem, job.gold, job.custom_id)
        config = SearchConfig(**batch.config)
    guarded = MeteredEngine(engine, _lease_keeper(sessions, claim, lease_seconds))
    started = time.perf_counter()
    try:
        result = run_search(problem, config, guarded, make_verifier(config.verifier, engine))
    except JobCancelled:
        return _finish(sessions, claim, JobState.cancelled, "cancelled while running")
    except TransientEngineError as error:
        with sessions() as session:
            release_job(session=session, claim=claim, error=f"transient: {error}")
        raise
    except Exception:  # a bug or a bad problem: record it on the job, do not retry
        return _finish(sessions, claim, JobState.failed, traceback.format_exc(limit=8))
    cost = cost_record(result, time.perf_counter() - started, engine.info.n_params)
    with sessions() as session:
        stored = store_result(session=session, claim=claim, gold=problem.gold,
                              result=result, cost=cost)
    return "succeeded" if stored else "lost"


def _finish(sessions: SessionFactory, claim: Claim, state: JobState, error: str) -> Outcome:
    with sessions() as session:
        done = finish_job(session=session, claim=claim, state=state, error=error)
        session.commit()
    return state.value if done else "lost"  # type: ignore[return-value]
