"""What the searches of one worker share besides their engine: the lease board that renews
their leases and tells them to yield, whether the worker takes messages (its intake), and
the watch on its engine. A worker drains through it, waits out engine outages through it,
and clears the way for a job that must run alone."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ttcq.db.workers import heartbeat, set_worker_state
from ttcq.worker.engines.base import Engine
from ttcq.worker.intake import Intake
from ttcq.worker.leases import Lease, LeaseBoard, SessionFactory
from ttcq.worker.outage import EngineWatch

logger = logging.getLogger(__name__)


@dataclass
class Crew:
    board: LeaseBoard
    sessions: SessionFactory
    name: str = ""
    intake: Intake = field(default_factory=Intake)
    watch: EngineWatch | None = None

    def watch_engine(self, engine: Engine) -> None:
        """Wait out outages of this (shared, served) engine."""
        self.watch = EngineWatch(engine, on_down=self._engine_down, on_up=self._engine_up)

    def drain(self, reason: str) -> None:
        """Stop taking messages; every search hands its job back at its next step."""
        self.intake.pause("drain")
        self.board.drain(reason)
        logger.warning("draining (%s): %d searches hand their jobs back at their next "
                       "step", reason, self.board.held())
        self._record("draining", reason)

    @contextmanager
    def alone(self, lease: Lease) -> Iterator[None]:
        """Run lease's job with no other in this worker (db.blame); raises JobYielded if
        another job runs alone here already."""
        self.board.take_solo(lease)
        self.intake.pause("a job runs alone")
        try:
            self.board.wait_alone(lease)
            yield
        finally:
            self.board.end_solo(lease)
            self.intake.resume("a job runs alone")

    def _engine_down(self, why: str) -> None:
        self.intake.pause("engine down")
        self.board.tell_all("outage", f"engine unreachable: {why}")
        self._record("paused", f"engine unreachable: {why}")

    def _engine_up(self, seconds: float) -> None:
        self.intake.resume("engine down")
        self._record("running", f"engine back after {seconds:.1f} s")

    def started(self) -> None:
        self._record("running", "")

    def beat(self) -> None:
        """The worker is alive (the reaper calls this every round)."""
        if not self.name:
            return
        with self.sessions() as session:
            if heartbeat(session=session, name=self.name):
                return
        self.started()  # no state yet (or it was cleared): record one

    def _record(self, state: str, reason: str) -> None:
        if not self.name:
            return
        outages = self.watch.outages if self.watch else 0
        try:
            with self.sessions() as session:
                set_worker_state(session=session, name=self.name, state=state,
                                 reason=reason[:2000], outages=outages)
        except Exception:  # metrics must never stop a worker
            logger.warning("recording worker state %s failed", state, exc_info=True)
