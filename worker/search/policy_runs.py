"""What a policy is fitted from: stored runs of a dataset, a batch at a time, each graded
problem's tokens, budget curve and first samples (worker.search.policy_fit fits from
them). Storage reads them as its own records (db.policy_data); stored() takes any object
of their shape."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ttcq.worker.search.names import SAMPLING_STRATEGIES


class Sample(NamedTuple):
    """One of a stored job's first samples."""

    answer: str | None  # canonical; None: cut off, or no answer found
    correct: bool
    score: float | None = None  # aggregated verifier score; None: unscored or cut off
    confidence: float | None = None  # token confidence; None: drawn without logprobs


@dataclass
class StoredJob:
    """One problem's stored result in one batch."""

    generation_tokens: int  # prompt + completion (cached included, as reports count)
    verifier_tokens: int
    points: dict[int, bool] = field(default_factory=dict)  # budget n -> correct
    samples: list[Sample] = field(default_factory=list)  # the first ones, in order

    @property
    def tokens(self) -> int:
        return self.generation_tokens + self.verifier_tokens

    def share(self, n: int, budget: int) -> float:
        """The part of this job's tokens that n of a run of `budget` cost: n / budget, or
        of what it drew, when it stopped early (its curve ends there)."""
        ran = max(self.points, default=budget)
        return min(n, ran) / ran

    def correct_at(self, n: int) -> bool:
        """Its answer at budget n: an early-stopped job's last answer stands beyond it."""
        below = [p for p in self.points if p <= n]
        return self.points[max(below)] if below else False


class JobRows(Protocol):
    """What storage reads of one graded problem (db.policy_data.JobRecord)."""

    @property
    def generation_tokens(self) -> int: ...
    @property
    def verifier_tokens(self) -> int: ...
    @property
    def points(self) -> Mapping[int, bool]: ...
    @property
    def samples(self) -> Sequence[tuple[str | None, bool, float | None, float | None]]: ...


class BatchRows(Protocol):
    """What storage reads of a batch (db.policy_data.BatchRecord)."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def jobs(self) -> Mapping[str, JobRows]: ...


def stored(batch: BatchRows) -> "StoredBatch":
    """A batch as storage read it (db.policy_data.batch_records), for the fit."""
    jobs = {problem: StoredJob(job.generation_tokens, job.verifier_tokens, dict(job.points),
                               [Sample(*sample) for sample in job.samples])
            for problem, job in batch.jobs.items()}
    return StoredBatch(batch.name, dict(batch.config), jobs)


@dataclass
class StoredBatch:
    name: str
    config: dict[str, Any]
    jobs: dict[str, StoredJob]  # problem key -> its result

    @property
    def budget(self) -> int:
        return max((n for job in self.jobs.values() for n in job.points), default=1)

    @property
    def strategy(self) -> str:
        return str(self.config["strategy"])

    @property
    def scored(self) -> bool:
        """A sampling batch whose samples a verifier scored."""
        return self.strategy in SAMPLING_STRATEGIES[1:] and self.config.get("verifier") not in (
            None, "none")

    @property
    def confident(self) -> bool:
        """A sampling batch whose samples carry token confidences (confidence_top_k)."""
        return self.strategy in SAMPLING_STRATEGIES and bool(self.config.get("confidence_top_k"))
