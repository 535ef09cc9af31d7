"""/v1: submit batches (JSON or a dataset file), read their progress and results, cancel
or requeue them."""

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from fastapi.responses import StreamingResponse
from kombu.exceptions import OperationalError
from sqlmodel import Session

from api.datasets import (
    DatasetError,
    Limits,
    detect_format,
    load_dataset,
    parse_fields,
    to_problems,
)
from api.deps import CeleryDep, OwnerDep, SessionDep, SettingsDep
from api.schemas import BatchCreate, BatchOptions, BatchPublic, JobDetail, JobPublic
from db import batches, jobs, queries_api, results
from db.batches import ProblemIn
from db.models import Batch
from db.session import session_scope
from ttcq.settings import Settings
from worker.queue import enqueue_jobs, queue_for
from worker.search.config import ConfigError, SearchConfig, make_config

router = APIRouter(prefix="/v1")
log = logging.getLogger(__name__)
NOT_FOUND = "no such batch"


def _bad_request(message: str, errors: list[dict[str, Any]] | None = None) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, {"message": message, "errors": errors or []})


def _check_options(options: BatchOptions) -> tuple[SearchConfig, dict[str, str]]:
    try:
        config = make_config(**options.config)
        fields = parse_fields(f"{k}={v}" for k, v in options.fields.items())
    except ConfigError as error:
        raise _bad_request(f"invalid config: {error}") from None
    except ValueError as error:
        raise _bad_request(str(error)) from None
    return config, fields


def _store_and_enqueue(
    *, session: Session, celery: Celery, owner: str, options: BatchOptions,
    config: SearchConfig, problems: list[ProblemIn],
) -> BatchPublic:
    batch, job_ids = batches.create_batch(
        session=session, owner=owner, config=config.model_dump(mode="json"),
        problems=problems, name=options.name, model=options.model, priority=options.priority,
    )
    # Enqueue only after the commit, so a worker never receives a job it cannot read yet.
    try:
        enqueue_jobs(celery, job_ids, priority=options.priority, queue=queue_for(options.model))
    except OperationalError as error:
        # A batch left queued with no messages would never run: cancel it and say so.
        log.error("enqueue failed for batch %s: %s", batch.id, error)
        batches.cancel_batch(session=session, batch_id=batch.id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the queue is unreachable; batch {batch.id} was cancelled, submit again later",
        ) from None
    return _public(session, batch)


def _public(session: Session, batch: Batch) -> BatchPublic:
    progress = queries_api.batch_progress(session=session, batch_ids=[batch.id])
    return BatchPublic.of(batch, progress[batch.id])


def _limits(settings: Settings) -> Limits:
    return Limits(settings.max_problem_chars, settings.max_batch_problems)


@router.post("/batches", status_code=status.HTTP_201_CREATED, tags=["batches"])
def create_batch(
    body: BatchCreate, session: SessionDep, celery: CeleryDep, owner: OwnerDep,
    settings: SettingsDep,
) -> BatchPublic:
    """Submit problems as JSON; the batch is stored and queued, and returned at once."""
    config, fields = _check_options(body)
    try:
        records = enumerate(body.problems, start=1)
        problems = to_problems(records, limits=_limits(settings), fields=fields)
    except DatasetError as error:
        raise _bad_request(error.summary(), error.detail()["errors"]) from None
    return _store_and_enqueue(session=session, celery=celery, owner=owner, options=body,
                              config=config, problems=problems)


@router.post("/batches/upload", status_code=status.HTTP_201_CREATED, tags=["batches"])
def upload_batch(
    file: Annotated[UploadFile, File(description="JSONL, CSV or Parquet")],
    session: SessionDep, celery: CeleryDep, owner: OwnerDep, settings: SettingsDep,
    config: Annotated[str, Form(description="SearchConfig fields as a JSON object")] = "{}",
    name: Annotated[str, Form(max_length=256)] = "",
    model: Annotated[str, Form(max_length=512)] = "",
    priority: Annotated[int, Form(ge=0, le=9)] = 0,
    field: Annotated[list[str] | None, Form(description="FIELD=COLUMN, repeatable")] = None,
    file_format: Annotated[
        str | None, Form(alias="format", description="jsonl, csv or parquet (default: by name)")
    ] = None,
) -> BatchPublic:
    """Submit a dataset file; the batch is stored and queued, and returned at once."""
    options = BatchOptions(config=_json_object(config), name=name, model=model,
                           priority=priority, fields=_field_pairs(field or []))
    search, fields = _check_options(options)
    try:
        fmt = file_format or detect_format(file.filename or "")
        problems = load_dataset(file.file.read(), fmt=fmt, limits=_limits(settings), fields=fields)
    except DatasetError as error:
        raise _bad_request(error.summary(), error.detail()["errors"]) from None
    return _store_and_enqueue(session=session, celery=celery, owner=owner, options=options,
                              config=search, problems=problems)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad_request(f"config is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise _bad_request("config must be a JSON object of SearchConfig fields")
    return value


def _field_pairs(pairs: list[str]) -> dict[str, str]:
    try:
        return parse_fields(pairs)
    except ValueError as error:
        raise _bad_request(str(error)) from None


def _owned_batch(session: Session, batch_id: uuid.UUID, owner: str) -> Batch:
    batch = batches.get_batch(session=session, batch_id=batch_id, owner=owner)
    if batch is None:  # someone else's batch is as invisible as a missing one
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return batch


@router.get("/batches", tags=["batches"])
def list_batches(
    session: SessionDep, owner: OwnerDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[BatchPublic]:
    """The caller's most recent batches, newest first."""
    own = batches.list_batches(session=session, owner=owner, limit=limit)
    progress = queries_api.batch_progress(session=session, batch_ids=[b.id for b in own])
    return [BatchPublic.of(b, progress[b.id]) for b in own]


@router.get("/batches/{batch_id}", tags=["batches"])
def read_batch(batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> BatchPublic:
    """The batch with its config, jobs by state, and accuracy so far."""
    return _public(session, _owned_batch(session, batch_id, owner))


@router.post("/batches/{batch_id}/cancel", tags=["batches"])
def cancel_batch(batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> BatchPublic:
    """Cancel queued jobs now; running ones stop at their next check."""
    batch = _owned_batch(session, batch_id, owner)
    batches.cancel_batch(session=session, batch_id=batch.id)
    session.refresh(batch)
    return _public(session, batch)


@router.post("/batches/{batch_id}/requeue", tags=["batches"])
def requeue_batch(
    batch_id: uuid.UUID, session: SessionDep, celery: CeleryDep, owner: OwnerDep
) -> BatchPublic:
    """Send the batch's queued jobs to the queue again, for messages Redis lost (a restart
    without persistence). A job runs once however many messages it has: the claim on its
    row admits one worker."""
    batch = _owned_batch(session, batch_id, owner)
    job_ids = jobs.queued_job_ids(session=session, batch_id=batch.id)
    try:
        enqueue_jobs(celery, job_ids, priority=batch.priority, queue=queue_for(batch.model))
    except OperationalError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "queue unreachable") from None
    return _public(session, batch)


@router.get(
    "/batches/{batch_id}/results",
    tags=["batches"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}},
                     "description": "one JSON object per problem, in dataset order"}},
)
def batch_results(
    batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep, settings: SettingsDep
) -> StreamingResponse:
    """Every job's result as JSON lines, finished or not."""
    batch = _owned_batch(session, batch_id, owner)
    lines = _result_lines(settings.database_url, batch.id, batch.config)
    return StreamingResponse(lines, media_type="application/x-ndjson")


def _result_lines(url: str, batch_id: uuid.UUID, config: dict[str, Any]) -> Iterator[str]:
    # A session of its own: the request's session is closed before the body is streamed.
    with contextmanager(session_scope)(url) as session:
        for record in results.batch_results(session=session, batch_id=batch_id, config=config):
            yield json.dumps(record, default=str) + "\n"


@router.get("/jobs/{job_id}", tags=["jobs"])
def read_job(job_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> JobDetail:
    """One job with its cost, final candidates and whole search trace."""
    job = queries_api.get_owned_job(session=session, job_id=job_id, owner=owner)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such job")
    return JobDetail.model_validate(
        {
            **JobPublic.model_validate(job).model_dump(),
            "cost": queries_api.job_cost(session=session, job_id=job.id),
            "candidates": results.job_candidates(session=session, job_id=job.id),
            "trace": results.job_trace(session=session, job_id=job.id),
        },
        from_attributes=True,
    )
