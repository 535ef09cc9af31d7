"""/v1/policies/fit: a compute-optimal policy fitted from the caller's own stored batches
(what `ttcq policy fit` asks for; with --db it fits against a database directly)."""

import uuid
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from ttcq.api.deps import OwnerDep, SessionDep
from ttcq.api.owned import owned_batch
from ttcq.api.routes_reports import MAX_REPORT_BATCHES
from ttcq.db.policy_data import batch_records
from ttcq.worker.search.policy import Policy
from ttcq.worker.search.policy_fit import FitError, fit_policy
from ttcq.worker.search.policy_runs import stored

router = APIRouter(prefix="/v1")


class PolicyFit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_REPORT_BATCHES,
                                       description="runs of one dataset with gold answers")
    tokens: float | None = Field(default=None, ge=1.0,
                                 description="mean tokens per problem to fit for "
                                             "(default: the most accurate per bin)")
    probe: int = Field(default=4, ge=1, le=64, description="k: samples of the probe (with "
                                                           "auto, the most tried)")
    bins: int = Field(default=4, ge=1, le=32)
    difficulty: Literal["auto", "agreement", "verifier", "confidence", "none"] = "auto"


@router.post("/policies/fit", tags=["reports"])
def fit(body: PolicyFit, session: SessionDep, owner: OwnerDep) -> Policy:
    """Fit a policy (worker.search.policy_fit): bins of the probe's confidence, each with
    the strategy and budget that solve the most within the token target, the probe chosen
    by cross-validation. 422 when the batches cannot give one (the message says why)."""
    ids = list(dict.fromkeys(body.batch_ids))
    for batch_id in ids:
        owned_batch(session, batch_id, owner)
    runs = [stored(b) for b in batch_records(session=session, batch_ids=ids,
                                             samples=body.probe)]
    try:
        return fit_policy(runs, probe=body.probe, bins=body.bins, target_tokens=body.tokens,
                          difficulty=body.difficulty)
    except FitError as error:
        raise HTTPException(422, str(error)) from None
