"""The thread governor: one llama.cpp thread per core that other processes leave free."""

import pytest

from ttcq.worker.engines import cpu_share
from ttcq.worker.engines.cpu_share import ThreadGovernor, busy_seconds

TICKS = cpu_share.CLOCK_TICKS


def stat(busy0: float, busy1: float, *, steal: float = 0) -> str:
    """/proc/stat text with two CPUs that have been busy busy0 and busy1 seconds."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    for i, busy in enumerate((busy0, busy1)):
        lines.append(f"cpu{i} {int(busy * TICKS)} 0 0 9999 0 0 0 {int(steal * TICKS)} 0 0")
    return "\n".join(lines + ["intr 1 2 3", "ctxt 5"])


class FakeMachine:
    """Two CPUs whose busy time, this process's own CPU time and the clock a test moves."""

    def __init__(self) -> None:
        self.busy, self.own, self.now = [0.0, 0.0], 0.0, 0.0

    def run(self, seconds: float, *, ours: float, others: float) -> None:
        """`ours` and `others`: cores' worth of CPU used over the next `seconds`."""
        self.now += seconds
        self.own += ours * seconds
        spread = (ours + others) * seconds / 2
        self.busy = [b + spread for b in self.busy]

    def governor(self, max_threads: int = 2) -> ThreadGovernor:
        return ThreadGovernor(max_threads, read_stat=lambda: stat(*self.busy),
                              own_seconds=lambda: self.own, clock=lambda: self.now)


@pytest.fixture(autouse=True)
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_share, "allowed_cpus", lambda: {0, 1})


def test_busy_seconds_sums_the_allowed_cpus_and_counts_steal() -> None:
    text = stat(3.0, 5.0, steal=1.0)
    assert busy_seconds(text, {0, 1}) == pytest.approx(10.0)
    assert busy_seconds(text, {1}) == pytest.approx(6.0)
    assert busy_seconds(text, {7}) is None


def test_an_idle_machine_gets_every_core_even_while_we_use_them() -> None:
    machine = FakeMachine()
    governor = machine.governor()
    machine.run(1.0, ours=2.0, others=0.05)
    assert governor.threads() == 2


def test_a_core_kept_busy_by_another_process_drops_a_thread() -> None:
    machine = FakeMachine()
    governor = machine.governor()
    machine.run(1.0, ours=1.0, others=1.0)
    assert governor.threads() == 1
    machine.run(1.0, ours=2.0, others=2.0)  # both cores wanted by others: still one
    assert governor.threads() == 1
    machine.run(1.0, ours=1.0, others=0.0)  # the other process left
    assert governor.threads() == 2


def test_a_light_load_of_others_keeps_both_threads() -> None:
    machine = FakeMachine()
    governor = machine.governor()
    machine.run(1.0, ours=1.8, others=0.2)
    assert governor.threads() == 2
    machine.run(1.0, ours=1.2, others=0.8)
    assert governor.threads() == 1


def test_the_load_is_read_again_only_after_the_sample_interval() -> None:
    machine = FakeMachine()
    governor = machine.governor()
    machine.run(cpu_share.SAMPLE_SECONDS / 5, ours=0.0, others=2.0)
    assert governor.threads() == 2  # too soon to tell: the last decision stands
    machine.run(cpu_share.SAMPLE_SECONDS, ours=0.0, others=2.0)
    assert governor.threads() == 1


def test_no_proc_stat_keeps_the_maximum() -> None:
    def missing() -> str:
        raise FileNotFoundError("/proc/stat")

    governor = ThreadGovernor(2, read_stat=missing)
    assert governor.threads() == 2
