"""Enqueueing job ids (never objects: the task re-reads the row). Call after commit."""

import uuid
from collections.abc import Sequence

from celery import Celery
from kombu.exceptions import ChannelError

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


def pending_messages(app: Celery, queue: str) -> int:
    """Messages waiting in queue (over its priority lists) plus every message delivered and
    not yet acknowledged (Redis keeps those in one hash for all queues): an upper bound on
    the messages that can still reach a worker of this queue."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        try:
            waiting = channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:  # no list at all: nothing waiting
            waiting = 0
        return int(waiting) + int(channel.client.hlen(channel.unacked_key))
