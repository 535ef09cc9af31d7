"""Fitting a compute-optimal policy from stored runs with gold answers (pure: the rows come
from db.policy_data, or from anywhere else).

- Difficulty: each problem's probe agreement, read from the first k samples of a stored
  sampling batch (what compute_optimal's probe draws, sample j seeded seed + j).
- Bins: quantiles of that agreement over the problems.
- Options of a bin: every (batch, budget point), plus "settled" (the probe's majority).
  Their cost is what compute_optimal would spend: a sampling strategy reuses the probe,
  so n samples cost max(n, k) samples; any other strategy costs the probe plus its run.
  A point n of a run of budget N is charged N's tokens times n / N: exact in expectation
  for independent samples and DVTS subtrees, an estimate for self-refine rounds.
- Choice: the option per bin that maximises the problems solved with the mean tokens per
  problem at most the target (an exact multiple-choice knapsack over the bins, keeping
  only the Pareto front of (tokens, solved)); without a target, each bin's most accurate.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.search.policy import SAMPLING_STRATEGIES, Policy, PolicyBin, agreement

# Fields of a batch's config that a bin must carry to run as that batch ran.
CARRIED = {
    "beam_search": ("beam_width", "lookahead", "aggregation"),
    "dvts": ("beam_width", "lookahead", "aggregation"),
    "lookahead": ("beam_width", "lookahead", "aggregation"),
    "best_of_n": ("aggregation", "selection"),
    "weighted_best_of_n": ("aggregation", "selection"),
    "self_refine": ("rounds",),
}


class FitError(ValueError):
    """Stored runs a policy cannot be fitted from."""


@dataclass
class StoredJob:
    """One problem's stored result in one batch."""

    generation_tokens: int  # prompt + completion (cached included, as reports count)
    verifier_tokens: int
    points: dict[int, bool] = field(default_factory=dict)  # budget n -> correct
    # (canonical answer, or None for a cut-off, correct?) of the first samples, in order.
    samples: list[tuple[str | None, bool]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return self.generation_tokens + self.verifier_tokens


@dataclass
class StoredBatch:
    name: str
    config: dict[str, Any]
    jobs: dict[str, StoredJob]  # problem key -> its result

    @property
    def budget(self) -> int:
        return max((n for job in self.jobs.values() for n in job.points), default=1)


@dataclass(frozen=True)
class Option:
    """Something a bin can run: a strategy at a budget (n = 0: settled)."""

    strategy: str
    n: int
    config: tuple[tuple[str, Any], ...] = ()
    source: str = ""


def probe_outcome(samples: Sequence[tuple[str | None, bool]]) -> bool:
    """Whether the probe's majority answer is right: most votes, ties to the answer seen
    first (as worker.search.scoring.select); no answer at all is wrong."""
    votes = Counter(answer for answer, _ in samples if answer is not None)
    if not votes:
        return False
    first: dict[str, bool] = {}
    for answer, correct in samples:
        if answer is not None:
            first.setdefault(answer, correct)
    best = max(votes, key=lambda a: (votes[a], -list(first).index(a)))
    return first[best]


def quantile_thresholds(values: Sequence[float], bins: int) -> list[float]:
    """Bin thresholds, falling, the last 0. With at most `bins` distinct values (a probe
    of k has k + 1), each value is its own bin; otherwise the value at each 1 - i/bins
    quantile (fewer bins where values repeat)."""
    ordered = sorted(values)
    distinct = set(ordered)
    if len(distinct) <= bins:
        cuts = distinct
    else:
        cuts = {ordered[min(len(ordered) - 1, int(len(ordered) * (1 - i / bins)))]
                for i in range(1, bins)}
    return sorted(cuts - {0.0, min(ordered, default=0.0)}, reverse=True) + [0.0]


def _options(batch: StoredBatch, k: int) -> list[tuple[Option, int]]:
    """(option, budget point it reads) for every budget point of the batch."""
    strategy = batch.config["strategy"]
    keys = ("verifier", *CARRIED.get(strategy, ()))
    carried = tuple((key, batch.config[key]) for key in keys
                    if batch.config.get(key) is not None)
    points = sorted({n for job in batch.jobs.values() for n in job.points})
    sampling = strategy in SAMPLING_STRATEGIES
    # A sampling strategy below k samples would still have spent the probe's k.
    return [(Option(strategy, n, carried, batch.name), n) for n in points
            if not sampling or n >= k]


def _cost(job: StoredJob, n: int, budget: int, sampling: bool, probe_tokens: float) -> float:
    share = job.tokens * n / budget
    return share if sampling else probe_tokens + share


def fit_policy(
    batches: Sequence[StoredBatch], *, probe: int = 4, bins: int = 4,
    target_tokens: float | None = None,
) -> Policy:
    """The policy that solves the most of these problems within target_tokens per problem
    on average (see the module's docstring)."""
    adaptive = [b.name for b in batches if b.config.get("strategy") == "compute_optimal"]
    if adaptive:
        raise FitError(f"batch {adaptive[0]} is compute_optimal: fit from fixed strategies")
    probe_batch = next((b for b in batches if b.config["strategy"] in SAMPLING_STRATEGIES
                        and b.budget >= probe), None)
    if probe_batch is None:
        raise FitError(f"no sampling batch (majority, best_of_n) with n >= probe={probe}: "
                       "the probe's agreement is read from one")
    keys = sorted(set.intersection(*(set(b.jobs) for b in batches)))
    if not keys:
        raise FitError("the batches share no graded problem")
    difficulty = {p: agreement([a for a, _ in probe_batch.jobs[p].samples[:probe]])
                  for p in keys}
    thresholds = quantile_thresholds(list(difficulty.values()), bins)
    members: list[list[str]] = [[] for _ in thresholds]
    for p in keys:
        members[next(i for i, t in enumerate(thresholds) if difficulty[p] >= t)].append(p)
    table = [_bin_table(batches, probe_batch, group, probe) for group in members]
    picks = _choose(table, None if target_tokens is None else target_tokens * len(keys))
    probe_tokens = sum(probe_batch.jobs[p].generation_tokens for p in keys) * probe / (
        probe_batch.budget * len(keys))
    policy = _policy(thresholds, picks, probe, len(keys), target_tokens)
    # The fit's own numbers, so that a batch budget can pick n (policy.budget_for_tokens).
    fitted = [b.model_copy(update={"share": len(group) / len(keys),
                                 "tokens": pick[1] / len(group) if group else 0.0})
            for b, group, pick in zip(policy.bins, members, picks, strict=True)]
    return policy.model_copy(update={"bins": fitted, "probe_tokens": probe_tokens})


def _bin_table(batches: Sequence[StoredBatch], probe_batch: StoredBatch,
               group: Sequence[str], k: int) -> list[tuple[Option, float, int]]:
    """(option, total tokens, problems solved) over a bin's problems, per option."""
    probe_tokens = {p: probe_batch.jobs[p].generation_tokens * k / probe_batch.budget
                    for p in group}
    settled = sum(probe_outcome(probe_batch.jobs[p].samples[:k]) for p in group)
    rows = [(Option("majority", 0, source=probe_batch.name), sum(probe_tokens.values()),
             settled)]
    for batch in batches:
        sampling = batch.config["strategy"] in SAMPLING_STRATEGIES
        for option, n in _options(batch, k):
            jobs = [batch.jobs[p] for p in group]
            tokens = sum(_cost(j, n, batch.budget, sampling, probe_tokens[p])
                         for j, p in zip(jobs, group, strict=True))
            rows.append((option, tokens, sum(j.points.get(n, False) for j in jobs)))
    return rows


def _choose(table: list[list[tuple[Option, float, int]]],
            limit: float | None) -> list[tuple[Option, float, int]]:
    """One row per bin: most solved within the token limit, then fewest tokens."""
    if limit is None:
        return [max(rows, key=lambda r: (r[2], -r[1])) for rows in table]
    # Pareto front of partial choices: (tokens, solved, picks), no entry dominated.
    front: list[tuple[float, int, list[tuple[Option, float, int]]]] = [(0.0, 0, [])]
    for rows in table:
        grown = [(t + r[1], s + r[2], [*picks, r]) for t, s, picks in front for r in rows]
        grown.sort(key=lambda e: (e[0], -e[1]))
        front = []
        for entry in grown:
            if not front or entry[1] > front[-1][1]:
                front.append(entry)
    within = [e for e in front if e[0] <= limit + 1e-9]
    # Nothing fits: the cheapest choice, so the policy at least spends the least.
    return (max(within, key=lambda e: e[1]) if within else front[0])[2]


def _policy(thresholds: list[float], picks: list[tuple[Option, float, int]], probe: int,
            problems: int, target: float | None) -> Policy:
    budget = max([o.n for o, _, _ in picks] + [probe])
    tokens, solved = sum(t for _, t, _ in picks), sum(s for _, _, s in picks)
    described = (f"fitted on {problems} problems"
                 + (f" for at most {target:.0f} tokens per problem" if target else "")
                 + f": expected {tokens / problems:.0f} tokens per problem, "
                 f"accuracy {solved / problems:.3f} on the fitted problems")
    return Policy(probe=probe, budget=budget, description=described, bins=[
        PolicyBin(min_agreement=t, strategy=o.strategy, n=o.n, config=dict(o.config))
        for t, (o, _, _) in zip(thresholds, picks, strict=True)
    ])
