"""/v1 reports and rescores: the numbers of `ttcq report` for the caller's own batches (the
CLI draws them), and rescoring a batch's stored candidates with another aggregation or
selection. Rescoring with a verifier needs its model, so it runs where one is: `ttcq
rescore --db URL --verifier NAME`."""

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from ttcq.api.deps import OwnerDep, SessionDep
from ttcq.api.owned import owned_batch
from ttcq.api.report.data import Report, build_report
from ttcq.db.models import Rescore
from ttcq.worker.rescoring import RescoreError, RescoreSummary, rescore_batch
from ttcq.worker.search.config import Aggregation, Selection

router = APIRouter(prefix="/v1")
MAX_REPORT_BATCHES = 50


class RescoreCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    aggregation: Aggregation | None = Field(default=None, description="default: the batch's")
    selection: Selection | None = Field(default=None, description="default: the batch's")


class RescorePublic(BaseModel):
    id: uuid.UUID
    batch_id: uuid.UUID
    aggregation: str
    selection: str
    verifier: str | None
    created_at: datetime
    jobs: int = Field(description="solved jobs rescored")
    graded: int
    correct: int = Field(description="at the full budget, as rescored")
    accuracy: float | None
    accuracy_before: float | None = Field(description="at the full budget, as searched")


@router.get("/report", tags=["reports"])
def read_report(
    session: SessionDep, owner: OwnerDep,
    batch_id: Annotated[list[uuid.UUID], Query(description="repeat for several batches")],
) -> Report:
    """Accuracy by configuration, level and budget, with 95% intervals and compute per
    problem, over these batches and their rescores (counted by the database)."""
    if len(batch_id) > MAX_REPORT_BATCHES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"at most {MAX_REPORT_BATCHES} batches in one report")
    owned = [owned_batch(session, b, owner) for b in dict.fromkeys(batch_id)]
    return build_report(session=session, batches=owned)


@router.post("/batches/{batch_id}/rescore", status_code=status.HTTP_201_CREATED,
             tags=["reports"])
def create_rescore(
    batch_id: uuid.UUID, body: RescoreCreate, session: SessionDep, owner: OwnerDep
) -> RescorePublic:
    """Choose every solved job's answer again from its stored candidates (nothing is
    generated); the rescore is stored and shows in reports as a line of its own."""
    batch = owned_batch(session, batch_id, owner)
    try:
        summary = rescore_batch(session=session, batch=batch, aggregation=body.aggregation,
                                selection=body.selection)
    except RescoreError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return rescore_public(session, summary)


def rescore_public(session: Session, summary: RescoreSummary) -> RescorePublic:
    row = session.get(Rescore, summary.rescore_id)
    assert row is not None
    return RescorePublic(
        id=row.id, batch_id=row.batch_id, aggregation=row.aggregation, selection=row.selection,
        verifier=row.verifier, created_at=row.created_at, jobs=summary.jobs,
        graded=summary.graded, correct=summary.correct, accuracy=summary.accuracy,
        accuracy_before=summary.accuracy_before,
    )
