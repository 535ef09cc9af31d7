"""How many threads the embedded engine should use, given what other processes leave free.

llama.cpp's threads meet at a barrier after every operation of a forward pass, hundreds of
times per token. When another process holds one of the cores, the thread that waits for
its descheduled partner wastes the rest of its time slice, and decoding slows by an order
of magnitude (measured: 17x with both cores busy). One thread per free core avoids that:
the governor reads how much CPU the other processes used lately (/proc/stat minus this
process's own time) and the engine resizes its thread team before each forward pass."""

import os
import time
from collections.abc import Callable
from pathlib import Path

SAMPLE_SECONDS = 0.5  # how often the load is read again; a decision lasts this long
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A core counts as free when other processes use less than this share of it.
SLACK = 0.25


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (a container's cpuset, taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def busy_seconds(stat: str, cpus: set[int]) -> float | None:
    """CPU seconds spent not idle on the given CPUs since boot, from /proc/stat's text
    (steal counts as busy: the hypervisor gave that time to someone else)."""
    total, seen = 0, False
    for line in stat.splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        fields = [int(x) for x in rest.split()]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        total += user + nice + system + irq + softirq + steal
        seen = True
    return total / CLOCK_TICKS if seen else None


def read_proc_stat() -> str:
    return Path("/proc/stat").read_text()


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class ThreadGovernor:
    """threads() is called before every forward pass; it reads the load again at most
    every SAMPLE_SECONDS and answers max_threads minus the cores other processes use."""

    def __init__(
        self,
        max_threads: int,
        *,
        read_stat: Callable[[], str] = read_proc_stat,
        own_seconds: Callable[[], float] = own_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_threads = max(1, max_threads)
        self._cpus = allowed_cpus()
        self._read_stat, self._own_seconds, self._clock = read_stat, own_seconds, clock
        self._current = self.max_threads
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            busy = busy_seconds(self._read_stat(), self._cpus)
        except OSError:  # no /proc (not Linux): keep max_threads
            return None
        return None if busy is None else (self._clock(), busy, self._own_seconds())

    def threads(self) -> int:
        if self._last is None or self.max_threads == 1:
            return self._current
        if self._clock() - self._last[0] < SAMPLE_SECONDS:
            return self._current
        now = self._sample()
        if now is None:
            return self._current
        wall = now[0] - self._last[0]
        others = max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2])) / wall
        free = len(self._cpus) - others
        self._current = max(1, min(self.max_threads, int(free + SLACK)))
        self._last = now
        return self._current
