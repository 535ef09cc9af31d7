"""Graceful preemption: a worker told to stop (SIGTERM, a spot notice, `ttcq worker
--drain`) takes no more messages, lets each search reach its next step boundary, saves
its checkpoint there and hands its job straight back to the queue, then exits.

Celery's warm shutdown stops a worker's steps in the reverse order it started them, so a
step that starts after the pool stops before the pool waits for its tasks: that is where
the drain begins. A prefork pool's children run their searches in their own processes:
the parent passes the drain on to them with SIGUSR2."""

import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_process_init

from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.crew import Crew

logger = logging.getLogger(__name__)
DRAIN_SIGNAL = signal.SIGUSR2


def install_drain(app: Celery, crew: Crew) -> None:
    """Drain crew's searches whenever a worker started from app shuts down."""

    class DrainStep(bootsteps.StartStopStep):
        requires = {"celery.worker.components:Pool"}

        def start(self, worker: Any) -> None:
            crew.name = f"{worker.hostname}/{os.getpid()}"
            crew.started()

        def stop(self, worker: Any) -> None:
            drain(worker, crew)

        def terminate(self, worker: Any) -> None:
            drain(worker, crew)

    app.steps["worker"].add(DrainStep)

    def in_child(**_: object) -> None:
        signal.signal(DRAIN_SIGNAL, lambda *_: crew.drain("the worker is shutting down"))

    worker_process_init.connect(in_child, weak=False)


def drain(worker: Any, crew: Crew) -> None:
    crew.drain("the worker is shutting down")
    for pid in getattr(worker.pool, "info", {}).get("processes", []):
        try:
            os.kill(pid, DRAIN_SIGNAL)
        except ProcessLookupError:
            pass


DRAIN_WAIT_SECONDS = 600


def drain_workers(names: list[str], settings: Settings | None = None,
                  wait: float = DRAIN_WAIT_SECONDS) -> Iterator[str]:
    """Tell running workers (by name; none: every worker of this machine) to drain, as
    SIGTERM would, and wait until they have exited; yields what happens, line by line."""
    app = make_celery(settings)
    try:
        targets = names or [n for n in _live(app) if n.endswith("@" + socket.gethostname())]
        if not targets:
            yield "no running worker to drain"
            return
        yield f"draining {', '.join(targets)}"
        app.control.shutdown(destination=targets)
        deadline = time.monotonic() + wait
        while (left := [n for n in _live(app) if n in targets]) and time.monotonic() < deadline:
            time.sleep(1)
        yield (f"still running after {wait:.0f} s: {', '.join(left)}" if left
               else "drained: their jobs are back in the queue")
    finally:
        app.close()


def _live(app: Celery) -> list[str]:
    return [name for reply in app.control.ping(timeout=1.0) or [] for name in reply]
