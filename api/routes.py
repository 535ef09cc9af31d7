"""/v1: submit batches (JSON or a dataset file), read their progress and results, cancel
or requeue them."""

import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Annotated, Any

import psycopg
import sqlalchemy.exc
from celery import Celery
from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from kombu.exceptions import OperationalError
from pydantic import ValidationError
from sqlmodel import Session

from ttcq.api.datasets import decode_json, detect_format, parse_fields, read_dataset
from ttcq.api.deps import CeleryDep, OwnerDep, SessionDep, SettingsDep
from ttcq.api.json_body import BodyError, read_submission
from ttcq.api.owned import owned_batch, owned_job
from ttcq.api.records import BadField, DatasetError, ErrorLog, Limits, check_text, to_problems
from ttcq.api.schemas import (
    BatchCreate,
    BatchOptions,
    BatchPublic,
    JobDetail,
    JobPublic,
    component_schemas,
)
from ttcq.db import attempts, batches, browse, jobs, queries_api, results
from ttcq.db.batches import ProblemIn
from ttcq.db.models import Batch
from ttcq.db.session import session_scope
from ttcq.settings import Settings
from ttcq.worker.queue import enqueue_jobs, queue_for
from ttcq.worker.search.config import ConfigError, SearchConfig, make_config
from ttcq.worker.search.names import LABEL_STRATEGIES

router = APIRouter(prefix="/v1")
log = logging.getLogger(__name__)
RESULT_LINES_PER_CHUNK = 200
DATABASE_DOWN = (psycopg.OperationalError, sqlalchemy.exc.OperationalError,
                 sqlalchemy.exc.InterfaceError)
QUEUE_DOWN = ("stored, but the queue could not take every job: they stay queued and a worker's "
              "reaper sends them once Redis answers; do not submit again")


def bad_request(message: str, errors: list[dict[str, Any]] | None = None) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST,
                         {"message": _safe_text(message), "errors": errors or []})


def _safe_text(text: str) -> str:
    """Text a response can carry whatever the request held (an unpaired surrogate
    quoted from the input would make the JSON answer itself fail)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_options(options: BatchOptions) -> tuple[SearchConfig, dict[str, str]]:
    try:
        config = make_config(**options.config)
        fields = parse_fields(f"{k}={v}" for k, v in options.fields.items())
        for name in ("name", "model"):
            check_text(getattr(options, name), name)
    except ConfigError as error:
        raise bad_request(f"invalid config: {error}") from None
    except BadField as bad:
        raise bad_request(f"{bad.field}: {bad.message}") from None
    except ValueError as error:
        raise bad_request(str(error)) from None
    return config, fields


def _store_and_enqueue(
    *, session: Session, celery: Celery, owner: str, options: BatchOptions,
    config: SearchConfig, problems: Iterable[ProblemIn], response: Response,
) -> BatchPublic:
    """Store the batch (all or nothing: a bad line anywhere stores nothing), then queue
    its jobs. Once stored a batch is never lost: if the queue fails part way, the jobs
    stay queued in Postgres and the reaper of any worker re-sends them (resend_lost)."""
    try:
        batch, job_ids = batches.create_batch(
            session=session, owner=owner, config=config.model_dump(mode="json"),
            problems=problems, name=options.name, model=options.model,
            priority=options.priority,
        )
    except DatasetError as error:
        raise bad_request(error.summary(), error.detail()["errors"]) from None
    except DATABASE_DOWN as error:
        log.error("storing a batch failed: %s", error)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the database is unreachable; nothing was stored") from None
    # Enqueue only after the commit, so a worker never receives a job it cannot read yet.
    try:
        enqueue_jobs(celery, job_ids, priority=options.priority, queue=queue_for(options.model))
    except OperationalError as error:
        log.error("enqueue of batch %s stopped: %s; the reaper will re-send it", batch.id, error)
        response.status_code = status.HTTP_202_ACCEPTED
        return public_batch(session, batch, warning=QUEUE_DOWN)
    return public_batch(session, batch)


def public_batch(session: Session, batch: Batch, warning: str | None = None) -> BatchPublic:
    progress = queries_api.batch_progress(session=session, batch_ids=[batch.id])
    usage = browse.batch_usage(session=session, batch_ids=[batch.id])
    return BatchPublic.of(batch, progress[batch.id], warning, usage[batch.id])


def _limits(settings: Settings, config: SearchConfig) -> Limits:
    return Limits(settings.max_problem_chars, settings.max_batch_problems,
                  gold_required=config.strategy in LABEL_STRATEGIES)


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _options(values: dict[str, Any]) -> BatchOptions:
    """The submission's options, or FastAPI's 422 for them (inputs left out: they may not
    even be text)."""
    try:
        return BatchOptions.model_validate(values)
    except ValidationError as error:
        raise RequestValidationError([
            {"type": e["type"], "msg": e["msg"],
             "loc": ("body", *(_safe_text(str(p)) for p in e["loc"]))}
            for e in error.errors()
        ]) from None


# The JSON body is read as a stream (api/json_body.py), not by FastAPI: its schema is given
# here, and its components added to the spec (api.app).
BATCH_CREATE_REF, BODY_SCHEMAS = component_schemas(BatchCreate)
BODY_SCHEMAS.update(component_schemas(SearchConfig)[1])  # the upload form's config


@router.post(
    "/batches", status_code=status.HTTP_201_CREATED, tags=["batches"],
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": BATCH_CREATE_REF}}}},
    responses={202: {"description": QUEUE_DOWN},
               400: {"description": "the body or a problem cannot be read (line, field)"},
               422: {"description": "options that do not validate"}},
)
def create_batch(
    body: Annotated[bytes, Depends(_raw_body)], response: Response, session: SessionDep,
    celery: CeleryDep, owner: OwnerDep, settings: SettingsDep,
) -> BatchPublic:
    """Submit problems as JSON (the BatchCreate schema); the batch is stored and queued,
    and returned at once. The problems are read one at a time, never all at once."""
    try:
        submission = read_submission(body)
    except BodyError as error:
        raise bad_request(str(error), [{"line": None, "field": error.field,
                                         "message": _safe_text(str(error))}]) from None
    except DatasetError as error:
        raise bad_request(error.summary(), error.detail()["errors"]) from None
    options = _options(submission.options)
    if not submission.has_problems:
        raise RequestValidationError([{"type": "missing", "loc": ("body", "problems"),
                                       "msg": "Field required"}])
    config, fields = _check_options(options)
    errors = ErrorLog()
    problems = to_problems(submission.problems(errors), limits=_limits(settings, config),
                           fields=fields, errors=errors)
    return _store_and_enqueue(session=session, celery=celery, owner=owner, options=options,
                              config=config, problems=problems, response=response)


@router.post(
    "/batches/upload", status_code=status.HTTP_201_CREATED, tags=["batches"],
    responses={202: {"description": QUEUE_DOWN}},
)
def upload_batch(
    file: Annotated[UploadFile, File(description="JSONL, CSV or Parquet")],
    response: Response, session: SessionDep, celery: CeleryDep, owner: OwnerDep,
    settings: SettingsDep,
    config: Annotated[str, Form(
        description="SearchConfig fields as a JSON object",
        json_schema_extra={"contentMediaType": "application/json",
                           "contentSchema": {"$ref": "#/components/schemas/SearchConfig"}},
    )] = "{}",
    name: Annotated[str, Form(max_length=256)] = "",
    model: Annotated[str, Form(max_length=512)] = "",
    priority: Annotated[int, Form(ge=0, le=9)] = 0,
    field: Annotated[list[str] | None, Form(description="FIELD=COLUMN, repeatable")] = None,
    file_format: Annotated[
        str | None, Form(alias="format", description="jsonl, csv or parquet (default: by name)")
    ] = None,
) -> BatchPublic:
    """Submit a dataset file; the batch is stored and queued, and returned at once. The
    file is read a line (or a Parquet row group) at a time."""
    options = BatchOptions(config=_json_object(config), name=name, model=model,
                           priority=priority, fields=_field_pairs(field or []))
    search, fields = _check_options(options)
    try:
        fmt = file_format or detect_format(file.filename or "")
        problems = read_dataset(file.file, fmt=fmt, limits=_limits(settings, search),
                                fields=fields)
    except DatasetError as error:
        raise bad_request(error.summary(), error.detail()["errors"]) from None
    return _store_and_enqueue(session=session, celery=celery, owner=owner, options=options,
                              config=search, problems=problems, response=response)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = decode_json(text)
    except ValueError as error:
        raise bad_request(f"config is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise bad_request("config must be a JSON object of SearchConfig fields")
    return value


def _field_pairs(pairs: list[str]) -> dict[str, str]:
    try:
        return parse_fields(pairs)
    except ValueError as error:
        raise bad_request(str(error)) from None


@router.get("/batches", tags=["batches"])
def list_batches(
    session: SessionDep, owner: OwnerDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[BatchPublic]:
    """The caller's most recent batches, newest first."""
    own = batches.list_batches(session=session, owner=owner, limit=limit)
    ids = [b.id for b in own]
    progress = queries_api.batch_progress(session=session, batch_ids=ids)
    usage = browse.batch_usage(session=session, batch_ids=ids)
    return [BatchPublic.of(b, progress[b.id], usage=usage[b.id]) for b in own]


@router.get("/batches/{batch_id}", tags=["batches"])
def read_batch(batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> BatchPublic:
    """The batch with its config, jobs by state, and accuracy so far."""
    return public_batch(session, owned_batch(session, batch_id, owner))


@router.post("/batches/{batch_id}/cancel", tags=["batches"])
def cancel_batch(batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> BatchPublic:
    """Cancel queued jobs now; running ones stop at their next check."""
    batch = owned_batch(session, batch_id, owner)
    batches.cancel_batch(session=session, batch_id=batch.id)
    session.refresh(batch)
    return public_batch(session, batch)


@router.post("/batches/{batch_id}/requeue", tags=["batches"])
def requeue_batch(
    batch_id: uuid.UUID, session: SessionDep, celery: CeleryDep, owner: OwnerDep
) -> BatchPublic:
    """Send the batch's queued jobs to the queue again, for messages Redis lost (a restart
    without persistence). A job runs once however many messages it has: the claim on its
    row admits one worker."""
    batch = owned_batch(session, batch_id, owner)
    job_ids = jobs.queued_job_ids(session=session, batch_id=batch.id)
    try:
        enqueue_jobs(celery, job_ids, priority=batch.priority, queue=queue_for(batch.model))
    except OperationalError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "queue unreachable") from None
    return public_batch(session, batch)


@router.post("/batches/{batch_id}/retry", tags=["batches"])
def retry_batch(
    batch_id: uuid.UUID, session: SessionDep, celery: CeleryDep, owner: OwnerDep
) -> BatchPublic:
    """Run the batch's failed jobs again, with fresh attempts: no dataset to submit again.
    Each job's attempt history keeps what its failures said; a search that saved a
    checkpoint resumes from it."""
    batch = owned_batch(session, batch_id, owner)
    job_ids = attempts.retry_failed(session=session, batch_id=batch.id)
    try:
        enqueue_jobs(celery, job_ids, priority=batch.priority, queue=queue_for(batch.model))
    except OperationalError:
        # The jobs are queued in Postgres: a worker's reaper sends them once Redis answers.
        return public_batch(session, batch, warning=QUEUE_DOWN)
    return public_batch(session, batch)


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
    batch = owned_batch(session, batch_id, owner)
    lines = _result_lines(settings.database_url, batch.id, batch.config)
    return StreamingResponse(lines, media_type="application/x-ndjson")


def _result_lines(url: str, batch_id: uuid.UUID, config: dict[str, Any]) -> Iterator[str]:
    """JSON lines, RESULT_LINES_PER_CHUNK at a time: each chunk crosses from the worker
    thread to the event loop, and a hop per line was most of the time of a large batch."""
    # A session of its own: the request's session is closed before the body is streamed.
    with contextmanager(session_scope)(url) as session:
        if session.get_bind().dialect.name == "postgresql":
            lines = results.batch_result_lines(session=session, batch_id=batch_id, config=config)
        else:
            records = results.batch_results(session=session, batch_id=batch_id, config=config)
            lines = (json.dumps(record, default=str) for record in records)
        while chunk := list(islice(lines, RESULT_LINES_PER_CHUNK)):
            yield "\n".join(chunk) + "\n"


@router.get("/jobs/{job_id}", tags=["jobs"])
def read_job(job_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> JobDetail:
    """One job with its cost, final candidates and whole search trace."""
    job = owned_job(session, job_id, owner)
    return JobDetail.model_validate(
        {
            **JobPublic.model_validate(job).model_dump(),
            "attempt_history": attempts.attempt_history(session=session, job_id=job.id),
            "cost": queries_api.job_cost(session=session, job_id=job.id),
            "candidates": results.job_candidates(session=session, job_id=job.id),
            "trace": results.job_trace(session=session, job_id=job.id),
        },
        from_attributes=True,
    )
