"""Request and response bodies of the API (the OpenAPI spec is generated from these)."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from ttcq.db.browse import Usage
from ttcq.db.models import (
    Batch,
    CandidateBase,
    JobBase,
    JobCostBase,
    TraceNodeBase,
    utcnow,
)
from ttcq.db.queries_api import Progress
from ttcq.worker.search.config import SearchConfig

PROBLEMS_DOC = (
    "Problem records, as the rows of a dataset file: {problem, gold?, custom_id?, ...} or the "
    "MATH-500 / GSM8K shapes; fields not used as problem, gold or custom_id are kept as meta. "
    "Errors name the 1-based position in this list as `line`."
)


class SearchConfigFields:
    """A submission's search config: published in the OpenAPI spec as SearchConfig itself
    (its fields, enums and bounds), read as a mapping and validated by that same model
    (worker.search.config.make_config) so that a bad field is a 400 naming it."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(SearchConfig.__pydantic_core_schema__)


class BatchOptions(BaseModel):
    """What a submission sets besides its problems; shared by the JSON and upload endpoints."""

    config: Annotated[dict[str, Any], SearchConfigFields] = Field(
        default_factory=dict,
        description="the search: SearchConfig's fields; those left out keep their defaults",
    )
    name: str = Field(default="", max_length=256)
    model: str = Field(default="", max_length=512)
    priority: int = Field(default=0, ge=0, le=9, description="higher runs first")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="column mapping, e.g. {'problem': 'q', 'gold': 'a', 'custom_id': 'id'}",
    )


class BatchCreate(BatchOptions):
    problems: list[dict[str, Any]] = Field(description=PROBLEMS_DOC)


class BatchPublic(BaseModel):
    id: uuid.UUID
    name: str
    model: str
    strategy: str
    priority: int
    created_at: datetime
    cancel_requested: bool
    config: dict[str, Any]
    total: int
    done: int = Field(description="jobs in a final state: succeeded, failed or cancelled")
    counts: dict[str, int] = Field(description="jobs by state, every state present")
    graded: int = Field(description="succeeded jobs with a gold answer")
    correct: int
    accuracy: float | None = Field(description="correct / graded so far; null before any")
    failures: dict[str, int] = Field(
        default_factory=dict,
        description="failed jobs by reason: search (the search raised), engine (the server "
                    "refused the job's request), transient (its engine errors recurred "
                    "while others succeeded), time_limit, worker_lost and engine_lost "
                    "(its worker or engine was lost each time it ran alone), store")
    tokens: int = Field(default=0, description="prompt + completion + verifier tokens so far")
    jobs_per_minute: float | None = Field(
        default=None, description="jobs ended per minute from the first start to the last "
                                  "end (to now while jobs run); null before any ended")
    warning: str | None = Field(default=None, description="why a submission answered 202")

    @classmethod
    def of(cls, batch: Batch, progress: Progress, warning: str | None = None,
           usage: Usage | None = None) -> "BatchPublic":
        usage = usage or Usage()
        running = progress.done < progress.total
        return cls(
            id=batch.id, name=batch.name, model=batch.model, strategy=batch.strategy,
            priority=batch.priority, created_at=batch.created_at,
            cancel_requested=batch.cancel_requested, config=batch.config,
            total=batch.total_jobs, done=progress.done, counts=progress.counts,
            graded=progress.graded, correct=progress.correct, accuracy=progress.accuracy,
            failures=progress.failures, tokens=usage.tokens,
            jobs_per_minute=usage.jobs_per_minute(utcnow(), running), warning=warning,
        )


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TraceNodePublic(TraceNodeBase):
    """A node of a job's search tree."""


class CandidatePublic(CandidateBase):
    """A final candidate of a job."""


class CostPublic(JobCostBase):
    """What one job cost (the job_cost row without its key)."""


class JobPublic(JobBase):
    """A job: its problem, state, attempts and answer."""


class AttemptPublic(_FromRow):
    """An attempt that ended without the job's result."""

    attempt: int
    worker: str | None
    started_at: datetime | None
    ended_at: datetime
    outcome: str = Field(description="lost, yielded, outage, transient or failed")
    charge: str = Field(description="none, stall or strike")
    progress: bool = Field(description="whether it saved a checkpoint")
    message: str


class JobDetail(JobPublic):
    attempt_history: list[AttemptPublic]
    cost: CostPublic | None
    candidates: list[CandidatePublic]
    trace: list[TraceNodePublic]


def component_schemas(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model as a reference into the OpenAPI components, and the component schemas it
    needs (itself and what it refers to): for a request body an endpoint reads itself."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    needed = schema.pop("$defs", {})
    return {"$ref": f"#/components/schemas/{model.__name__}"}, {**needed,
                                                                model.__name__: schema}


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when the database cannot be reached")
    database: str
    redis: str
