"""Fitting a compute-optimal policy from stored runs with gold answers (pure: the rows come
from db.policy_data, or from anywhere else).

- Probes: what compute_optimal's probe would have seen is read from the first k samples
  of a stored sampling batch (sample j is seeded seed + j either way): their answers'
  agreement, their verifier scores from a scored batch (best-of-N), or their token
  confidences from a batch drawn with confidence_top_k. "none" is no probe: one strategy
  for every problem.
- Bins: quantiles of the probe's confidence over the problems.
- Options of a bin: every (batch, budget point), plus "settled" (the probe's answer).
  Their cost is what compute_optimal would spend: a sampling strategy reuses the probe,
  so n samples cost max(n, k) samples (scores too, where the probe's were the same
  verifier's); any other strategy costs the probe plus its run. A point n of a run of
  budget N is charged N's tokens times n / N: exact in expectation for independent
  samples and DVTS subtrees, an estimate for self-refine rounds.
- Choice per bin: the options that maximise the problems solved with the mean tokens per
  problem at most the target (an exact multiple-choice knapsack over the bins, keeping
  only the Pareto front of (tokens, solved)); without a target, each bin's most accurate.
- Choice of probe: a probe pays only if what it tells apart is worth its tokens, and a
  fit with more bins and options looks better on the problems it was fitted on than it
  is. So each probe (signal and k) is fitted and scored by cross-validation (fitted on
  4/5 of the problems, counted on the other 1/5, five times), the best on the held-out
  parts within the target wins, and it is fitted again on all the problems.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ttcq.worker.search.names import SAMPLING_STRATEGIES
from ttcq.worker.search.policy import (
    Policy,
    PolicyBin,
    agreement,
    mean_score,
)
from ttcq.worker.search.policy_runs import Sample, StoredBatch

# Fields of a batch's config that a bin must carry to run as that batch ran.
CARRIED = {
    "beam_search": ("beam_width", "lookahead", "aggregation"),
    "dvts": ("beam_width", "lookahead", "aggregation"),
    "lookahead": ("beam_width", "lookahead", "aggregation"),
    "best_of_n": ("aggregation", "selection"),
    "weighted_best_of_n": ("aggregation", "selection"),
    "self_refine": ("rounds",),
}
FOLDS = 5
Signal = Literal["auto", "agreement", "verifier", "confidence", "none"]
ProbeSignal = Literal["agreement", "verifier", "confidence", "none"]
# Where each signal is read from (a stored sampling batch with what), and what is read.
NEEDS = {"agreement": ("sampling batch (majority, best_of_n)", "agreement is"),
         "verifier": ("scored sampling batch (best_of_n, weighted_best_of_n with a verifier)",
                      "scores are"),
         "confidence": ("sampling batch drawn with confidence_top_k", "token confidences are")}


class FitError(ValueError):
    """Stored runs a policy cannot be fitted from."""


@dataclass(frozen=True)
class Option:
    """Something a bin can run: a strategy at a budget (n = 0: settled)."""

    strategy: str
    n: int
    config: tuple[tuple[str, Any], ...] = ()
    source: int = -1  # the batch it is read from, by position


@dataclass(frozen=True)
class Probe:
    """How compute_optimal would estimate difficulty: k samples' agreement, verifier
    scores or token confidences, read from `source`; or none (k = 0)."""

    signal: ProbeSignal
    k: int
    source: int = -1  # the batch it is read from, by position

    def __str__(self) -> str:
        return "no probe" if self.signal == "none" else f"{self.signal} of {self.k}"


@dataclass
class Row:
    """One problem under one probe: its confidence, what the probe cost, and each
    option's (tokens, correct), the probe's included."""

    confidence: float
    options: dict[Option, tuple[float, bool]]
    probe_tokens: float = 0.0


@dataclass(frozen=True)
class Fit:
    thresholds: list[float]
    picks: list[Option]


def probe_outcome(samples: Sequence[Sample]) -> bool:
    """Whether the probe's majority answer is right: most votes, ties to the answer seen
    first (as worker.search.scoring.select); no answer at all is wrong."""
    votes = Counter(s.answer for s in samples if s.answer is not None)
    if not votes:
        return False
    first: dict[str, bool] = {}
    for s in samples:
        if s.answer is not None:
            first.setdefault(s.answer, s.correct)
    best = max(votes, key=lambda a: (votes[a], -list(first).index(a)))
    return first[best]


def best_scored_outcome(samples: Sequence[Sample]) -> bool:
    """Whether the probe's best-scored sample with an answer is right (best-of-N's choice,
    ties to the first); none with an answer is wrong."""
    voters = [(s.score or 0.0, -i, s.correct) for i, s in enumerate(samples)
              if s.answer is not None]
    return max(voters)[2] if voters else False


def quantile_thresholds(values: Sequence[float], bins: int) -> list[float]:
    """Bin thresholds, falling, the last 0. With at most `bins` distinct values (a probe
    of k has k + 1 agreements), each value is its own bin; otherwise the value at each
    1 - i/bins quantile (fewer bins where values repeat)."""
    ordered = sorted(values)
    distinct = set(ordered)
    if len(distinct) <= bins:
        cuts = distinct
    else:
        cuts = {ordered[min(len(ordered) - 1, int(len(ordered) * (1 - i / bins)))]
                for i in range(1, bins)}
    return sorted(cuts - {0.0, min(ordered, default=0.0)}, reverse=True) + [0.0]


def fit_policy(
    batches: Sequence[StoredBatch], *, probe: int = 4, bins: int = 4,
    target_tokens: float | None = None, difficulty: Signal = "auto",
) -> Policy:
    """The policy that solves the most of these problems within target_tokens per problem
    on average (see the module's docstring). difficulty auto tries no probe, agreement of
    2 and of `probe` samples, and verifier scores and token confidences of 1, 2 and
    `probe` samples (each where a batch holds them)."""
    adaptive = [b.name for b in batches if b.strategy == "compute_optimal"]
    if adaptive:
        raise FitError(f"batch {adaptive[0]} is compute_optimal: fit from fixed strategies")
    judges = {b.config["verifier"] for b in batches if b.strategy != "majority"
              and b.config.get("verifier") not in (None, "none")}
    if len(judges) > 1:
        raise FitError(f"the batches were scored by different verifiers "
                       f"({', '.join(sorted(judges))}): a job has one; fit from runs of one")
    keys = sorted(set.intersection(*(set(b.jobs) for b in batches))) if batches else []
    if not keys:
        raise FitError("the batches share no graded problem")
    probes = _probes(batches, probe, difficulty)
    limit = target_tokens
    tried = []
    for p in probes:
        rows = probe_rows(batches, p, keys)
        tried.append((p, rows, cross_validate(rows, keys, bins, limit)))
    within = [t for t in tried if limit is None or t[2][1] <= limit * 1.05]
    # Most solved on the held-out parts, then fewest tokens; nothing within: the cheapest.
    best = (max(within, key=lambda t: (t[2][0], -t[2][1])) if within
            else min(tried, key=lambda t: t[2][1]))
    chosen, rows, _ = best
    fit = fit_rows(rows, keys, bins, limit)
    return _policy(batches, chosen, rows, keys, fit, target_tokens, tried)


def _source(batches: Sequence[StoredBatch], k: int, signal: str) -> int | None:
    """The first sampling batch holding the signal (scores, confidences) whose first k
    samples a probe of k would have drawn: n >= k, and no early stop (it may have drawn
    fewer)."""
    return next((i for i, b in enumerate(batches) if b.strategy in SAMPLING_STRATEGIES
                 and b.budget >= k and b.config.get("early_stop") is None
                 and (b.scored or signal != "verifier")
                 and (b.confident or signal != "confidence")), None)


def _probes(batches: Sequence[StoredBatch], k: int, difficulty: Signal) -> list[Probe]:
    if difficulty == "none":
        return [Probe("none", 0)]
    if difficulty != "auto":
        source = _source(batches, k, difficulty)
        if source is None:
            batch, read = NEEDS[difficulty]
            raise FitError(f"no {batch} with n >= probe={k}: the probe's {read} read from one")
        return [Probe(difficulty, k, source)]
    found = [Probe("none", 0)]
    sizes: dict[ProbeSignal, set[int]] = {"agreement": {min(2, k), k} - {1},
                                          "verifier": {1, min(2, k), k},
                                          "confidence": {1, min(2, k), k}}
    for signal, counts in sizes.items():
        for j in sorted(counts):
            source = _source(batches, j, signal)
            if source is not None:
                found.append(Probe(signal, j, source))
    return found


def probe_rows(batches: Sequence[StoredBatch], probe: Probe, keys: Iterable[str]) -> dict[str, Row]:
    """What each option would cost and get on each problem after this probe."""
    source = batches[probe.source] if probe.source >= 0 else None
    k = probe.k
    rows = {}
    for p in keys:
        options: dict[Option, tuple[float, bool]] = {}
        probe_generation = probe_verifier = 0.0
        confidence = 0.0
        if source is not None:
            job = source.jobs[p]
            samples = job.samples[:k]
            probe_generation = job.generation_tokens * job.share(k, source.budget)
            if probe.signal == "agreement":
                confidence = agreement([s.answer for s in samples])
                settled = probe_outcome(samples)
            elif probe.signal == "confidence":
                confidence = mean_score([s.confidence for s in samples])
                settled = probe_outcome(samples)
            else:
                probe_verifier = job.verifier_tokens * job.share(k, source.budget)
                confidence = mean_score([s.score for s in samples])
                settled = best_scored_outcome(samples)
            options[Option("majority", 0, source=probe.source)] = (
                probe_generation + probe_verifier, settled)
        for position, batch in enumerate(batches):
            for option, n in _options(batch, position, k):
                job = batch.jobs[p]
                share = job.tokens * job.share(n, batch.budget)
                if batch.strategy not in SAMPLING_STRATEGIES or source is None:
                    tokens = probe_generation + probe_verifier + share
                elif probe_verifier and not (batch.scored and _same_verifier(batch, source)):
                    tokens = share + probe_verifier  # the samples reused, not their scores
                else:
                    tokens = share  # the probe's samples (and scores) are the first k
                options[option] = (tokens, job.correct_at(n))
        rows[p] = Row(confidence, options, probe_generation + probe_verifier)
    return rows


def _same_verifier(a: StoredBatch, b: StoredBatch) -> bool:
    """Its step scores are the probe's (aggregation only combines them afterwards)."""
    return bool(a.config.get("verifier") == b.config.get("verifier"))


def _options(batch: StoredBatch, position: int, k: int) -> list[tuple[Option, int]]:
    """(option, budget point it reads) for every budget point of the batch."""
    keys = ("verifier", *CARRIED.get(batch.strategy, ()))
    carried = tuple((key, batch.config[key]) for key in keys
                    if batch.config.get(key) is not None)
    points = sorted({n for job in batch.jobs.values() for n in job.points})
    sampling = batch.strategy in SAMPLING_STRATEGIES
    # A sampling strategy below k samples would still have spent the probe's k.
    return [(Option(batch.strategy, n, carried, position), n) for n in points
            if not sampling or n >= k]


def fit_rows(rows: dict[str, Row], keys: Sequence[str], bins: int,
             target: float | None) -> Fit:
    """Thresholds from these problems' confidences, and each bin's option."""
    thresholds = quantile_thresholds([rows[p].confidence for p in keys], bins)
    members = _members(rows, keys, thresholds)
    names = list(rows[keys[0]].options) if keys else []
    table = [[(o, sum(rows[p].options[o][0] for p in group),
               sum(rows[p].options[o][1] for p in group)) for o in names]
             for group in members]
    picks = _choose(table, None if target is None else target * len(keys))
    return Fit(thresholds, [option for option, _, _ in picks])


def _members(rows: dict[str, Row], keys: Iterable[str], thresholds: list[float]) -> list[list[str]]:
    members: list[list[str]] = [[] for _ in thresholds]
    for p in keys:
        members[next(i for i, t in enumerate(thresholds) if rows[p].confidence >= t)].append(p)
    return members


def apply_fit(rows: dict[str, Row], keys: Iterable[str], fit: Fit) -> tuple[int, float]:
    """(problems solved, tokens) of a fit on these problems."""
    solved, tokens = 0, 0.0
    for group, option in zip(_members(rows, keys, fit.thresholds), fit.picks, strict=True):
        for p in group:
            used, correct = rows[p].options[option]
            solved, tokens = solved + correct, tokens + used
    return solved, tokens


def cross_validate(rows: dict[str, Row], keys: Sequence[str], bins: int,
                   target: float | None, folds: int = FOLDS) -> tuple[float, float]:
    """(accuracy, mean tokens per problem) of fits on the rest, counted on each fold."""
    folds = min(folds, len(keys))  # under five problems: leave one out
    if folds < 2:
        solved, tokens = apply_fit(rows, keys, fit_rows(rows, keys, bins, target))
        return solved / len(keys), tokens / len(keys)
    solved, tokens = 0, 0.0
    for f in range(folds):
        train = [p for i, p in enumerate(keys) if i % folds != f]
        test = [p for i, p in enumerate(keys) if i % folds == f]
        s, t = apply_fit(rows, test, fit_rows(rows, train, bins, target))
        solved, tokens = solved + s, tokens + t
    return solved / len(keys), tokens / len(keys)


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


def _policy(batches: Sequence[StoredBatch], probe: Probe, rows: dict[str, Row],
            keys: Sequence[str], fit: Fit, target: float | None,
            tried: list[tuple[Probe, dict[str, Row], tuple[float, float]]]) -> Policy:
    members = _members(rows, keys, fit.thresholds)
    solved, tokens = apply_fit(rows, keys, fit)
    source = batches[probe.source] if probe.source >= 0 else None
    probe_tokens = sum(rows[p].probe_tokens for p in keys) / len(keys)
    compared = "; ".join(f"{p}: {acc:.3f} at {tok:.0f} tokens" for p, _, (acc, tok) in tried)
    described = (f"fitted on {len(keys)} problems"
                 + (f" for at most {target:.0f} tokens per problem" if target else "")
                 + f": expected {tokens / len(keys):.0f} tokens per problem, "
                 f"accuracy {solved / len(keys):.3f} on the fitted problems; probe chosen by "
                 f"{min(FOLDS, len(keys))}-fold cross-validation ({compared})")
    policy_bins = []
    for threshold, option, group in zip(fit.thresholds, fit.picks, members, strict=True):
        spent = sum(rows[p].options[option][0] for p in group)
        policy_bins.append(PolicyBin(
            min_confidence=threshold, strategy=option.strategy, n=option.n,
            config=dict(option.config), share=len(group) / len(keys),
            tokens=spent / len(group) if group else 0.0))
    by_score = probe.signal == "verifier" and source is not None
    aggregation = source.config.get("aggregation") if by_score else None  # type: ignore[union-attr]
    verifier = source.config.get("verifier") if by_score else None  # type: ignore[union-attr]
    # A confidence policy's probe draws its confidences as the source batch drew them.
    logprobs = ({"top_k": source.config["confidence_top_k"],
                 "window": source.config.get("confidence_window", 2048)}
                if probe.signal == "confidence" and source is not None else {})
    return Policy(probe=probe.k, budget=max([o.n for o in fit.picks] + [probe.k]),
                  difficulty="agreement" if probe.signal == "none" else probe.signal,
                  aggregation=aggregation, verifier=verifier, bins=policy_bins,
                  description=described[:2000], probe_tokens=probe_tokens, **logprobs)
