"""`ttcq run`'s live progress: problems done, accuracy so far, tokens, rate and time left,
on one line redrawn in place on a terminal, and a line every few seconds elsewhere."""

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

LOG_EVERY_SECONDS = 10.0  # when the output is not a terminal (a log file, CI)


def _compact(count: float) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e6 else (
        f"{count / 1e3:.1f}k" if count >= 1e3 else f"{count:.0f}")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class LiveProgress:
    total: int
    out: TextIO
    started: float = field(default_factory=time.perf_counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    graded: int = 0
    correct: int = 0
    tokens: int = 0
    _last_shown: float = 0.0

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    def add(self, outcome: str, correct: bool | None, tokens: int) -> None:
        """One more problem finished; redraws the line."""
        self.outcomes[outcome] += 1
        if correct is not None:
            self.graded += 1
            self.correct += bool(correct)
        self.tokens += tokens
        self.show(final=self.done >= self.total)

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        parts = [f"{self.done}/{self.total} problems"]
        if self.graded:
            parts.append(f"{self.correct}/{self.graded} correct "
                         f"({self.correct / self.graded:.0%})")
        parts += [f"{_compact(self.tokens)} tokens", f"{self.done / elapsed:.2f} problems/s"]
        failed = self.done - self.outcomes["succeeded"]
        if failed:
            parts.append(f"{failed} not solved")
        if 0 < self.done < self.total:
            parts.append(f"{_duration(elapsed / self.done * (self.total - self.done))} left")
        return " · ".join(parts)

    def show(self, final: bool = False) -> None:
        now = time.perf_counter()
        if self.out.isatty():
            self.out.write("\r" + self.line(now) + "\x1b[K" + ("\n" if final else ""))
        elif final or now - self._last_shown >= LOG_EVERY_SECONDS:
            self.out.write(self.line(now) + "\n")
            self._last_shown = now
        self.out.flush()
