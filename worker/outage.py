"""Telling an engine outage from a job's own failure, and waiting one out.

When a search's engine call fails for a reason that may pass (refused connections, 5xx,
429, after the HTTP client's own retries), the worker asks the engine for one real token.
If it answers, the failure followed that job (a strike: db.blame). If it does not, the
engine is down for everybody: the worker stops taking messages, tells every search to
hand its job back at its next step boundary (uncharged, its checkpoint saved), and checks
the engine until it answers, then takes messages again. A server that restarts for minutes
costs a pause, never a job."""

import logging
import threading
import time
from collections.abc import Callable

from ttcq.worker.engines.base import Engine, EngineError

logger = logging.getLogger(__name__)
PROBE_EVERY_SECONDS = 2.0


class EngineWatch:
    def __init__(
        self, engine: Engine, *, on_down: Callable[[str], None],
        on_up: Callable[[float], None], probe_every: float = PROBE_EVERY_SECONDS,
    ):
        self.engine, self.probe_every = engine, probe_every
        self._on_down, self._on_up = on_down, on_up
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def is_down(self, error: Exception) -> bool:
        """After a search's transient engine error: True if the engine answers nobody
        (an outage, now being waited out), False if it answers (the error is the job's)."""
        with self._lock:
            if self.down:
                return True
            try:
                self.engine.health_check()
                return False
            except EngineError as health:
                self._begin(f"{error}; health check: {health}")
                return True

    def _begin(self, why: str) -> None:
        self.down_since = time.monotonic()
        self.outages += 1
        logger.warning("engine unreachable (%s): taking no messages, handing running jobs "
                       "back at their next step, checking the engine every %.0f s",
                       why, self.probe_every)
        self._on_down(why)
        threading.Thread(target=self._wait_out, name="ttcq-engine-watch", daemon=True).start()

    def _wait_out(self) -> None:
        while True:
            time.sleep(self.probe_every)
            try:
                self.engine.health_check()
            except EngineError:
                continue
            with self._lock:
                assert self.down_since is not None
                seconds = time.monotonic() - self.down_since
                self.down_since = None
            logger.warning("engine answers again after %.1f s: taking messages", seconds)
            self._on_up(seconds)
            return
