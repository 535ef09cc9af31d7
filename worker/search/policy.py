"""The compute-optimal policy: a cheap probe estimates a problem's difficulty, the estimate
lands in a bin, and the bin names the strategy and budget to spend on the problem.

The difficulty estimate is the probe's answer agreement: the share of the k probe samples
that gave the most common (canonical) answer; a cut-off sample gives no answer. Snell et
al. bin by a verifier's score; agreement needs no verifier call, so the probe costs only
k samples, and the same number can be read back from any stored sampling batch, which is
what `ttcq policy fit` does."""

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.search.types import Candidate

SAMPLING_STRATEGIES = ("majority", "best_of_n", "weighted_best_of_n")


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the field."""


class PolicyBin(BaseModel):
    """Problems whose probe agreement is at least min_agreement (and below the previous
    bin's): spend n of strategy on them, with config's overrides. n = 0: the probe's
    answer stands (a settled problem costs nothing more)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_agreement: float = Field(ge=0.0, le=1.0)
    strategy: str = Field(default="majority", min_length=1)
    n: int = Field(default=0, ge=0, le=4096)
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_overrides(self) -> "PolicyBin":
        fixed = {"strategy", "n", "policy", "batch_tokens"} & set(self.config)
        if fixed:
            raise ValueError(f"config may not set {', '.join(sorted(fixed))} "
                             "(the bin's own fields set strategy and n)")
        if self.strategy == "compute_optimal":
            raise ValueError("a bin cannot run compute_optimal itself")
        return self


class Policy(BaseModel):
    """Bins from the easiest (highest agreement) to the hardest; the last starts at 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: int = Field(default=4, ge=1, le=64, description="k: samples of the probe")
    # The per-problem budget (n) the bins' budgets were chosen for: a run with another
    # n scales every bin's budget by n / budget.
    budget: int = Field(default=16, ge=1, le=4096)
    bins: list[PolicyBin] = Field(min_length=1, max_length=32)
    description: str = Field(default="", max_length=2000, description="where it came from")

    @model_validator(mode="after")
    def _check_bins(self) -> "Policy":
        thresholds = [b.min_agreement for b in self.bins]
        if any(a <= b for a, b in zip(thresholds, thresholds[1:], strict=False)):
            raise ValueError("bins: min_agreement must fall strictly from bin to bin")
        if thresholds[-1] != 0.0:
            raise ValueError("bins: the last bin must have min_agreement 0 (it takes the rest)")
        return self

    def bin_of(self, agreement: float) -> int:
        """Index of the bin an agreement lands in (0 = the easiest)."""
        return next(i for i, b in enumerate(self.bins) if agreement >= b.min_agreement)


# Following Snell et al. (2024): on easy problems sampling with a vote is as good as any
# search and cheapest; on hard ones a PRM-guided beam search pays. A unanimous probe is
# settled: more samples would (almost always) vote the same way.
DEFAULT_POLICY = Policy(
    probe=4,
    budget=16,
    bins=[
        PolicyBin(min_agreement=1.0, strategy="majority", n=0),
        PolicyBin(min_agreement=0.75, strategy="majority", n=16),
        PolicyBin(min_agreement=0.5, strategy="weighted_best_of_n", n=16),
        PolicyBin(min_agreement=0.0, strategy="beam_search", n=16, config={"beam_width": 4}),
    ],
)


def agreement(answers: Sequence[str | None]) -> float:
    """Share of the samples that gave the most common answer (None: no answer)."""
    if not answers:
        return 0.0
    counts = Counter(a for a in answers if a is not None)
    return max(counts.values(), default=0) / len(answers)


def probe_agreement(candidates: Sequence[Candidate]) -> float:
    return agreement([c.canonical if c.finished else None for c in candidates])


def scaled_budget(bin_n: int, policy: Policy, n: int, multiple: int = 1) -> int:
    """A bin's budget for a run with per-problem budget n: bin_n * n / policy.budget,
    rounded to a multiple of `multiple` (a tree search's beam width), at least one."""
    if bin_n == 0:
        return 0
    scaled = round(bin_n * n / policy.budget / multiple) * multiple
    return max(multiple, scaled)


def describe(error: ValidationError, prefix: str = "policy") -> str:
    parts = []
    for item in error.errors():
        where = ".".join([prefix, *(str(p) for p in item["loc"])])
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def parse_policy(data: Any) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(describe(error)) from None


def load_policy(path: str | Path) -> dict[str, Any]:
    """A policy YAML file as the validated mapping a SearchConfig stores."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise PolicyError(f"policy {path}: not valid YAML: {error}") from None
    return parse_policy(data).model_dump(mode="json")


def dump_policy(policy: Policy) -> str:
    return yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False)
