"""Enqueueing job ids (never objects: the task re-reads the row). Call after commit."""

import uuid
from collections.abc import Sequence

from celery import Celery

from worker.celery_app import DEFAULT_QUEUE, SOLVE_TASK


def queue_for(model: str) -> str:
    """One Celery queue per model, so a job only reaches workers serving its model."""
    return model or DEFAULT_QUEUE


def celery_priority(priority: int) -> int:
    """Our priority (higher runs first, clamped to 0..9) as Redis priority (0 runs first)."""
    return 9 - min(max(priority, 0), 9)


def enqueue_jobs(
    app: Celery, job_ids: Sequence[uuid.UUID], *, priority: int = 0, queue: str = DEFAULT_QUEUE
) -> None:
    with app.producer_or_acquire() as producer:
        for job_id in job_ids:
            app.send_task(
                SOLVE_TASK,
                args=[str(job_id)],
                queue=queue,
                priority=celery_priority(priority),
                producer=producer,
            )
