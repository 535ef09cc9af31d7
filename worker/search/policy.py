"""The compute-optimal policy: a cheap probe estimates a problem's difficulty, the estimate
lands in a bin, and the bin names the strategy and budget to spend on the problem.

The estimate is the probe's confidence, high for easy problems, by one of three signals:
- agreement: the share of the k probe samples that gave the most common (canonical)
  answer; a cut-off sample gives no answer. It needs no verifier call, so the probe
  costs only k samples.
- verifier: the mean of the k samples' verifier scores (aggregated over their steps; a
  cut-off sample counts 0), as Snell et al. bin problems. The scores cost verifier
  tokens, and are kept: a best-of-N bin does not score those samples again.
- confidence: the mean of the k samples' token confidences (DeepConf's: each sample's
  lowest group confidence over `window` tokens, from its top_k logprobs per token). It
  costs no tokens, only the logprobs the engine returns; unlike the others it has no
  upper bound (minus a mean logprob).
Each number can be read back from a stored sampling batch (for confidence, one drawn with
confidence_top_k), which is what `ttcq policy fit` does. A probe of k = 0 is no probe: the
policy is one strategy for every problem (what a fit chooses where no estimate pays for
itself)."""

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ttcq.worker.search.names import SAMPLING_STRATEGIES
from ttcq.worker.search.types import Aggregation, Candidate

Difficulty = Literal["agreement", "verifier", "confidence"]


class PolicyError(ValueError):
    """A policy that cannot be used; the message names the field."""


class PolicyBin(BaseModel):
    """Problems whose probe confidence is at least min_confidence (and below the previous
    bin's): spend n of strategy on them, with config's overrides. n = 0: the probe's
    answer stands (a settled problem costs nothing more)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # min_agreement: its name before the verifier signal, still read in older policies.
    # At most 1 for agreement and verifier scores (Policy checks it); token confidence
    # has no upper bound.
    min_confidence: float = Field(
        ge=0.0, validation_alias=AliasChoices("min_confidence", "min_agreement"))
    strategy: str = Field(default="majority", min_length=1)
    n: int = Field(default=0, ge=0, le=4096)
    config: dict[str, Any] = Field(default_factory=dict)
    # From a fit, for a batch budget: the share of problems that landed here, and their
    # mean tokens (probe included) at n.
    share: float | None = Field(default=None, ge=0.0, le=1.0)
    tokens: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="after")
    def _check_overrides(self) -> "PolicyBin":
        fixed = {"strategy", "n", "policy", "batch_tokens", "batch_allowance"} & set(self.config)
        if fixed:
            raise ValueError(f"config may not set {', '.join(sorted(fixed))} "
                             "(the bin's own fields set strategy and n)")
        if self.strategy == "compute_optimal":
            raise ValueError("a bin cannot run compute_optimal itself")
        return self


class Policy(BaseModel):
    """Bins from the easiest (highest confidence) to the hardest; the last starts at 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: int = Field(default=4, ge=0, le=64, description="k: samples of the probe (0: none)")
    difficulty: Difficulty = "agreement"
    # For difficulty verifier: how a probe sample's step scores become its score, and the
    # verifier whose scores the thresholds were fitted on (a job must use the same).
    aggregation: Aggregation | None = None
    verifier: str | None = Field(default=None, max_length=64)
    # For difficulty confidence: logprobs per token, and tokens per group confidence.
    top_k: int = Field(default=20, ge=1, le=20)
    window: int = Field(default=2048, ge=1)
    # The per-problem budget (n) the bins' budgets were chosen for: a run with another
    # n scales every bin's budget by n / budget.
    budget: int = Field(default=16, ge=1, le=4096)
    bins: list[PolicyBin] = Field(min_length=1, max_length=32)
    description: str = Field(default="", max_length=2000, description="where it came from")
    probe_tokens: float | None = Field(default=None, ge=0.0, description="mean, from a fit")

    @model_validator(mode="after")
    def _check_bins(self) -> "Policy":
        thresholds = [b.min_confidence for b in self.bins]
        if any(a <= b for a, b in zip(thresholds, thresholds[1:], strict=False)):
            raise ValueError("bins: min_confidence must fall strictly from bin to bin")
        if thresholds[-1] != 0.0:
            raise ValueError("bins: the last bin must have min_confidence 0 (it takes the rest)")
        if self.difficulty != "confidence" and thresholds[0] > 1.0:
            raise ValueError(f"bins.0.min_confidence: {thresholds[0]:g} is above 1, where "
                             f"{self.difficulty} never reaches (only difficulty confidence "
                             "is unbounded)")
        if self.probe == 0 and (len(self.bins) > 1 or self.bins[0].n == 0):
            raise ValueError("probe: without a probe (0) there is one bin, with n > 0 "
                             "(nothing tells problems apart, and nothing has an answer yet)")
        return self

    def bin_of(self, confidence: float) -> int:
        """Index of the bin a probe's confidence lands in (0 = the easiest)."""
        return next(i for i, b in enumerate(self.bins) if confidence >= b.min_confidence)


# Following Snell et al. (2024): on easy problems sampling with a vote is as good as any
# search and cheapest; on hard ones a PRM-guided beam search pays. A unanimous probe is
# settled: more samples would (almost always) vote the same way.
DEFAULT_POLICY = Policy(
    probe=4,
    budget=16,
    bins=[
        PolicyBin(min_confidence=1.0, strategy="majority", n=0),
        PolicyBin(min_confidence=0.75, strategy="majority", n=16),
        PolicyBin(min_confidence=0.5, strategy="weighted_best_of_n", n=16),
        PolicyBin(min_confidence=0.0, strategy="beam_search", n=16, config={"beam_width": 4}),
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


def mean_score(scores: Sequence[float | None]) -> float:
    """The verifier and confidence signals: the mean of the samples' scores or token
    confidences (None, a cut-off's score or a sample without logprobs: 0)."""
    return sum(s or 0.0 for s in scores) / len(scores) if scores else 0.0


def scaled_budget(bin_n: int, policy: Policy, n: int, multiple: int = 1) -> int:
    """A bin's budget for a run with per-problem budget n: bin_n * n / policy.budget,
    rounded to a multiple of `multiple` (a tree search's beam width), at least one."""
    if bin_n == 0:
        return 0
    scaled = round(bin_n * n / policy.budget / multiple) * multiple
    return max(multiple, scaled)


def expected_tokens(policy: Policy, n: int) -> float | None:
    """Mean tokens per problem of a run at budget n, from the fit's per-bin numbers (None
    for a policy without them). Each bin's cost beyond the probe grows linearly with its
    scaled budget: samples, beams and subtrees cost about the same each."""
    probe = policy.probe_tokens
    if probe is None or any(b.share is None or b.tokens is None for b in policy.bins):
        return None
    total = 0.0
    for b in policy.bins:
        assert b.share is not None and b.tokens is not None
        width = int(b.config.get("beam_width", 1))  # fitted tree bins carry their width
        scaled = scaled_budget(b.n, policy, n, width)
        if b.n == 0:
            cost = b.tokens
        elif b.strategy in SAMPLING_STRATEGIES:  # the probe's samples are among the n
            cost = b.tokens * max(scaled, policy.probe) / max(b.n, policy.probe)
        else:
            cost = probe + (b.tokens - probe) * scaled / b.n
        total += b.share * cost
    return total


def fitting_budget(policy: Policy, per_problem: float) -> int | None:
    """The largest per-problem budget n whose expected mean tokens (the fit's numbers) is
    at most per_problem; None when not even n = 1 fits (the probe alone is left)."""
    costs = {n: expected_tokens(policy, n) for n in range(1, 4097)}
    if costs[1] is None:
        raise PolicyError("batch_tokens: the policy has no fitted token numbers (share, "
                          "tokens, probe_tokens); fit one with `ttcq policy fit`")
    fitting = [n for n, cost in costs.items() if cost is not None and cost <= per_problem]
    return max(fitting) if fitting else None


def budget_for_tokens(policy: Policy, tokens: float, problems: int) -> int:
    """The largest per-problem budget n whose expected mean tokens times the number of
    problems stays within a batch's tokens: what a batch starts with (each job then
    follows the batch's ledger: allowance)."""
    per_problem = tokens / max(problems, 1)
    n = fitting_budget(policy, per_problem)
    if n is None:
        raise PolicyError(f"batch_tokens: {per_problem:.0f} tokens per problem is below the "
                          f"policy's least ({expected_tokens(policy, 1):.0f}, the probe "
                          "included)")
    return n


def allowance(policy: Policy, *, batch_tokens: float, spent: int, finished: int,
              running: int, total: int, n: int) -> float:
    """Tokens per problem left for a job starting now: the batch's tokens less what its
    finished jobs spent and what its running ones are expected to spend (at the batch's
    n), shared by the jobs not yet finished or running, this one included. A batch that
    spent more than expected gives its later problems less, one that spent less gives
    them more, so the total follows the budget even where the problems are harder or
    easier than those the policy was fitted on."""
    running_cost = running * (expected_tokens(policy, n) or 0.0)
    left = batch_tokens - spent - running_cost
    return max(0.0, left) / max(1, total - finished - running)


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
