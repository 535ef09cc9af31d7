"""/v1/batches/{id}/label: label a stored batch's candidates (ttcq label --from-batch);
/v1/batches/{id}/labels: a label batch's labels as training data (ttcq export)."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ConfigDict, Field

from ttcq.api.deps import CeleryDep, OwnerDep, SessionDep, SettingsDep
from ttcq.api.label_export import ExportFormat, export_rows
from ttcq.api.owned import owned_batch
from ttcq.api.routes import QUEUE_DOWN, bad_request, public_batch
from ttcq.api.schemas import BatchPublic
from ttcq.db.labels import (
    LabelSourceError,
    create_label_batch,
    label_stats,
    labelled_solutions,
    mcts_solutions,
)
from ttcq.db.session import session_scope
from ttcq.worker.queue import enqueue_jobs, queue_for
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.names import LABEL_STRATEGIES

router = APIRouter(prefix="/v1")


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["math_shepherd", "omega"] = "math_shepherd"
    rollouts: int = Field(default=8, ge=1, le=256, description="rollouts from each prefix")
    solutions: int = Field(default=4, ge=1, le=4096,
                           description="at most this many finished candidates per problem")
    config: dict[str, object] = Field(
        default_factory=dict, description="other SearchConfig fields for the rollouts "
                                          "(default: the source batch's sampling settings)")
    name: str = Field(default="", max_length=256)
    priority: int = Field(default=0, ge=0, le=9)


# What rollouts keep of the source batch's config: they continue its solutions alike.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "max_tokens", "max_step_tokens",
                   "step_delimiter", "system_prompt", "seed")


@router.post("/batches/{batch_id}/label", status_code=status.HTTP_201_CREATED,
             tags=["labels"],
             responses={400: {"description": "the batch cannot be labelled (why)"},
                        404: {"description": "no such batch of the caller's"}})
def label_batch(batch_id: uuid.UUID, body: LabelRequest, response: Response,
                session: SessionDep, celery: CeleryDep, owner: OwnerDep) -> BatchPublic:
    """A new batch that labels the steps of this batch's finished candidates, one job per
    problem that succeeded and has a gold answer. Nothing is queued when it cannot run."""
    source = owned_batch(session, batch_id, owner)
    if source.strategy in LABEL_STRATEGIES:
        raise bad_request(f"batch {batch_id} is a label batch: label the batch it labelled "
                          "instead")
    inherited = {k: source.config[k] for k in SAMPLING_FIELDS if k in source.config}
    try:
        config = make_config(**{**inherited, **body.config, "strategy": body.method,
                                "n": body.solutions, "rollouts": body.rollouts,
                                "verifier": "none"})
        batch, job_ids = create_label_batch(
            session=session, source=source, owner=owner,
            config=config.model_dump(mode="json"), name=body.name, priority=body.priority)
    except ConfigError as error:
        raise bad_request(f"invalid config: {error}") from None
    except LabelSourceError as error:
        raise bad_request(str(error)) from None
    try:
        enqueue_jobs(celery, job_ids, priority=body.priority, queue=queue_for(batch.model))
    except OperationalError:
        response.status_code = status.HTTP_202_ACCEPTED
        return public_batch(session, batch, warning=QUEUE_DOWN)
    return public_batch(session, batch)


@router.get("/batches/{batch_id}/labels", tags=["labels"], response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "trl: one row per labelled solution; "
                                            "jsonl-tree: one object per problem"}})
def export_labels(
    batch_id: uuid.UUID, session: SessionDep, owner: OwnerDep, settings: SettingsDep,
    fmt: Annotated[ExportFormat, Query(alias="format")] = "trl",
) -> StreamingResponse:
    """A label batch's step labels as training data, in dataset order; of an MCTS batch,
    its candidates with each step's Q-value as the soft label."""
    batch = owned_batch(session, batch_id, owner)
    if batch.strategy not in (*LABEL_STRATEGIES, "mcts"):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"batch {batch_id} is a {batch.strategy} batch, not a label or "
                            f"mcts batch: run `ttcq label --from-batch {batch_id}` first")
    return StreamingResponse(_lines(settings.database_url, batch.id, batch.strategy, fmt),
                             media_type="application/x-ndjson")


@router.get("/batches/{batch_id}/labels/stats", tags=["labels"])
def read_label_stats(batch_id: uuid.UUID, session: SessionDep,
                     owner: OwnerDep) -> dict[str, object]:
    """A label batch's labels in numbers: solutions and steps labelled, the share labelled
    good, rollouts spent, tokens computed per label, and the first wrong step by index."""
    batch = owned_batch(session, batch_id, owner)
    if batch.strategy not in LABEL_STRATEGIES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"batch {batch_id} is a {batch.strategy} batch, not a label batch")
    return label_stats(session=session, batch_id=batch.id)


def _lines(url: str, batch_id: uuid.UUID, strategy: str, fmt: ExportFormat) -> Iterator[str]:
    read = mcts_solutions if strategy == "mcts" else labelled_solutions
    with contextmanager(session_scope)(url) as session:
        solutions = read(session=session, batch_id=batch_id)
        for row in export_rows(solutions, fmt):
            yield json.dumps(row, ensure_ascii=False) + "\n"


