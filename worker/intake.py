"""Whether a Celery worker takes messages. A worker stops taking them while its engine is
down, while a job runs alone and while it drains: a message it took then would only go
back to the queue. Each reason pauses it; it takes messages again when none is left."""

import logging
import threading
from typing import Any

from celery import Celery, bootsteps

logger = logging.getLogger(__name__)


class Intake:
    def __init__(self) -> None:
        self._consumer: Any = None
        self._queues: list[str] = []
        self._reasons: set[str] = set()
        self._lock = threading.Lock()

    def attach(self, consumer: Any) -> None:
        """The worker's consumer, once it consumes (again, after a reconnect)."""
        with self._lock:
            self._consumer = consumer
            self._queues = [q.name for q in consumer.task_consumer.queues]
            if self._reasons:
                self._on_loop()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def pause(self, reason: str) -> None:
        with self._lock:
            first = not self._reasons
            self._reasons.add(reason)
            if first and self._consumer is not None:
                logger.warning("taking no messages: %s", reason)
                self._on_loop()

    def resume(self, reason: str) -> None:
        with self._lock:
            if reason not in self._reasons:
                return
            self._reasons.discard(reason)
            if not self._reasons and self._consumer is not None:
                logger.warning("taking messages again (%s is over)", reason)
                self._on_loop()

    def _on_loop(self) -> None:
        """Consumer calls belong on its event loop's thread (without a loop: here). The
        loop runs what it is handed in no set order, so what it runs is not "cancel" or
        "add" but "match the consumer to the reasons as they are then"."""
        hub = getattr(self._consumer, "hub", None)
        if hub is not None:
            hub.call_soon(self._match)
        else:
            self._match()

    def _match(self) -> None:
        paused = bool(self._reasons)
        consumer = self._consumer
        for queue in self._queues:
            consuming = consumer.task_consumer.consuming_from(queue)
            if paused and consuming:
                consumer.cancel_task_queue(queue)
            elif not paused and not consuming:
                consumer.add_task_queue(queue)


def install_intake(app: Celery, intake: Intake) -> None:
    """Attach intake to the consumer of every worker started from app."""

    class IntakeStep(bootsteps.StartStopStep):
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def start(self, parent: Any) -> None:
            intake.attach(parent)

    app.steps["consumer"].add(IntakeStep)
