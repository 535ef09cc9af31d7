"""Leases of running jobs, renewed by one thread per process and database.

A worker with dozens of searches in flight would otherwise run a renewal thread and a
database round trip per job every second. Here each running job holds a Lease on a shared
board; the board's thread renews every held lease in one statement and marks the ones the
database did not renew (the job was handed to another worker, or its batch cancelled) as
lost. A search learns of that, of its time limit, or that it is told to yield (its worker
drains, its engine is down, a job must run alone) at its next engine call (check())."""

import logging
import threading
import time
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Literal

from sqlmodel import Session

from ttcq.db.jobs import Claim, renew_leases

SessionFactory = Callable[[], AbstractContextManager[Session]]
IDLE_EXIT_SECONDS = 5.0  # a board with no leases lets its thread end

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The job's batch was cancelled, or the job was handed to another worker."""


class JobTimedOut(Exception):
    """The search ran past its time limit (a thread cannot be killed: it stops itself)."""


class JobYielded(Exception):
    """The search stops at a step boundary and its job goes back to the queue, uncharged:
    outcome "yielded" (a drain, room for a job that runs alone) or "outage" (the engine
    answers nobody)."""

    def __init__(self, outcome: Literal["yielded", "outage"], reason: str):
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


class Lease:
    def __init__(self, board: "LeaseBoard", claim: Claim, time_limit: float | None):
        self.board, self.claim = board, claim
        self.deadline = time.monotonic() + time_limit if time_limit else None
        self.lost = threading.Event()
        self.told: JobYielded | None = None

    def __enter__(self) -> "Lease":
        self.board.add(self)
        return self

    def __exit__(self, *_: object) -> None:
        self.board.remove(self)

    def check(self) -> None:
        if self.lost.is_set():
            raise JobCancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise JobTimedOut()
        told = self.told or self.board.draining
        if told is not None:
            raise JobYielded(told.outcome, told.reason)


class LeaseBoard:
    def __init__(self, sessions: SessionFactory, lease_seconds: int, every: float):
        self._sessions, self._lease_seconds, self._every = sessions, lease_seconds, every
        self._leases: set[Lease] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._solo: Lease | None = None
        # Set while the worker drains: every search, and any that starts, yields.
        self.draining: JobYielded | None = None

    def tell_all(self, outcome: Literal["yielded", "outage"], reason: str) -> None:
        """Every search on the board yields at its next step boundary."""
        with self._lock:
            for lease in self._leases:
                lease.told = JobYielded(outcome, reason)

    def drain(self, reason: str) -> None:
        self.draining = JobYielded("yielded", reason)

    def held(self) -> int:
        with self._lock:
            return len(self._leases)

    def take_solo(self, lease: Lease) -> None:
        """Make lease the only one on the board: the others yield at their next step
        boundary, and any added meanwhile yields at once (then wait_alone). Raises
        JobYielded if another lease holds the board alone."""
        with self._lock:
            if self._solo is not None:
                raise JobYielded("yielded", "another job of this worker runs alone")
            self._solo = lease
            for other in self._leases - {lease}:
                other.told = JobYielded("yielded", "making room for a job that runs alone")

    def wait_alone(self, lease: Lease, poll: float = 0.05) -> None:
        """Until the others have left the board (lease's own check still applies)."""
        while True:
            with self._lock:
                if not self._leases - {lease}:
                    return
            lease.check()
            time.sleep(poll)

    def end_solo(self, lease: Lease) -> None:
        with self._lock:
            if self._solo is lease:
                self._solo = None

    def add(self, lease: Lease) -> None:
        with self._lock:
            if self._solo is not None:
                lease.told = JobYielded("yielded", "making room for a job that runs alone")
            self._leases.add(lease)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ttcq-leases",
                                                daemon=True)
                self._thread.start()

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self._leases.discard(lease)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            time.sleep(self._every)
            with self._lock:
                held = list(self._leases)
                if not held and time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                    self._thread = None
                    return
            if held:
                idle_since = time.monotonic()
                self._renew(held)

    def _renew(self, held: list[Lease]) -> None:
        try:
            with self._sessions() as session:
                renewed = renew_leases(session=session, claims=[x.claim for x in held],
                                       lease_seconds=self._lease_seconds)
        except Exception:  # the leases have slack for a passing database error
            logger.warning("renewing %d leases failed", len(held), exc_info=True)
            return
        for lease in held:
            if lease.claim.job_id not in renewed:
                lease.lost.set()


@lru_cache(maxsize=64)
def lease_board(sessions: Hashable, lease_seconds: int, every: float) -> LeaseBoard:
    """The process's board for one database (session factory) and lease policy."""
    return LeaseBoard(sessions, lease_seconds, every)  # type: ignore[arg-type]
