"""The caller's own batch or job, or a 404: someone else's is as invisible as a missing one."""

import uuid

from fastapi import HTTPException, status
from sqlmodel import Session

from ttcq.db import batches, queries_api
from ttcq.db.models import Batch, Job


def owned_batch(session: Session, batch_id: uuid.UUID, owner: str) -> Batch:
    batch = batches.get_batch(session=session, batch_id=batch_id, owner=owner)
    if batch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such batch {batch_id}")
    return batch


def owned_job(session: Session, job_id: uuid.UUID, owner: str) -> Job:
    job = queries_api.get_owned_job(session=session, job_id=job_id, owner=owner)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such job {job_id}")
    return job
