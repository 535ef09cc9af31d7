"""Does compute_optimal pay? On the ground-truth task (lab.ground_truth), split a dataset
in two: fixed strategies run on both halves; a policy is fitted (worker.search.policy_fit)
on the first half's runs at several token targets; compute_optimal runs on the held-out
half with each policy. Each is compared, problem by problem (a paired difference), with two
fixed strategies:
- planned: the one a user without compute_optimal would pick for the target, the most
  accurate on the fit half within the target's tokens (the same information the policy
  had), run on the held-out half;
- hindsight: the most accurate on the held-out half itself that spends no more mean
  tokens than compute_optimal did. Picked after seeing the held-out results, it is
  biased upwards (the best of 26 noisy arms), so it is a harder bar than any user has.

Tokens are the reports' count (prompt, cached included, + completion + verifier). A fixed
run's budget point n of N is charged N's tokens times n / N (exact in expectation for
independent samples and DVTS subtrees); compute_optimal's tokens are measured per job."""

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.ground_truth.task import TaskSpec
from lab.ground_truth_batches import run_batch
from ttcq.db.batches import ProblemIn
from ttcq.db.policy_data import batch_records, job_outcomes
from ttcq.worker.search.policy import Policy, budget_for_tokens
from ttcq.worker.search.policy_fit import (
    Probe,
    Row,
    apply_fit,
    fit_policy,
    fit_rows,
    probe_rows,
)
from ttcq.worker.search.policy_runs import StoredBatch
from ttcq.worker.search.policy_runs import stored as as_stored
from ttcq.worker.service import SessionFactory

JUDGED = {"verifier": "self_judge"}
PROBE = 4
BINS = 5  # a probe of 4 has 5 possible agreements: 0, 1/4, ... 1
FIXED: dict[str, dict[str, Any]] = {
    "majority": {"strategy": "majority", "n": 32, "verifier": "none"},
    "best_of_n": {"strategy": "best_of_n", "n": 32, **JUDGED},
    "weighted_best_of_n": {"strategy": "weighted_best_of_n", "n": 32, **JUDGED},
    "dvts": {"strategy": "dvts", "n": 32, "beam_width": 4, **JUDGED},
    **{f"beam_search_{n}": {"strategy": "beam_search", "n": n, "beam_width": 4, **JUDGED}
       for n in (4, 8, 16, 32)},
}


@dataclass(frozen=True)
class Arm:
    """One way of solving the held-out problems: per problem, correct? and tokens."""

    name: str
    correct: dict[str, bool]
    tokens: dict[str, float]

    @property
    def accuracy(self) -> float:
        return sum(self.correct.values()) / len(self.correct)

    @property
    def mean_tokens(self) -> float:
        return sum(self.tokens.values()) / len(self.tokens)


@dataclass(frozen=True)
class Comparison:
    target: float  # the fitted policy's mean-token target per problem
    policy: Policy
    optimal: Arm
    fixed: Arm  # hindsight: the best held-out arm spending no more than `optimal`
    difference: float  # accuracy, optimal minus fixed, on the same problems
    stderr: float  # of the paired difference
    mixed: float  # the fixed arms' concave hull at optimal's tokens (see frontier)
    planned: Arm  # the fixed arm picked on the fit half for the target, held out
    planned_difference: float
    planned_stderr: float


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a binomial proportion."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def paired(a: Arm, b: Arm) -> tuple[float, float]:
    """Mean and standard error of a's correct minus b's over the same problems."""
    diffs = [int(a.correct[p]) - int(b.correct[p]) for p in a.correct]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1)
    return mean, math.sqrt(var / len(diffs))


def fixed_arms(sessions: SessionFactory, batches: dict[str, uuid.UUID]) -> list[Arm]:
    """Every budget point of every fixed batch, as an arm."""
    arms = []
    with sessions() as session:
        for name, batch_id in batches.items():
            [stored] = [as_stored(b) for b in batch_records(
                session=session, batch_ids=[batch_id], samples=0)]
            for n in sorted({n for job in stored.jobs.values() for n in job.points}):
                arms.append(Arm(f"{name} n={n}" if not name.startswith("beam") else name,
                                {p: j.points[n] for p, j in stored.jobs.items()},
                                {p: j.tokens * n / stored.budget for p, j in stored.jobs.items()}))
    return arms


def run_fixed(sessions: SessionFactory, problems: Sequence[ProblemIn],
              quality: float) -> dict[str, uuid.UUID]:
    return {name: run_batch(sessions, problems, quality=quality, **config)
            for name, config in FIXED.items()}


@dataclass(frozen=True)
class Prepared:
    stored: list[StoredBatch]  # the fit half's runs, as a policy fit reads them
    fit_arms: list[Arm]
    held_arms: list[Arm]
    held_stored: list[StoredBatch]


def prepare(sessions: SessionFactory, fit: Sequence[ProblemIn], held_out: Sequence[ProblemIn],
            quality: float) -> Prepared:
    """The fixed strategies on both halves."""
    fit_batches = run_fixed(sessions, fit, quality)
    held_batches = run_fixed(sessions, held_out, quality)
    with sessions() as session:
        stored, held_stored = (
            [as_stored(r) for r in batch_records(session=session, batch_ids=list(b.values()),
                                                 samples=PROBE)]
            for b in (fit_batches, held_batches))
    return Prepared(stored, fixed_arms(sessions, fit_batches),
                    fixed_arms(sessions, held_batches), held_stored)


def known_difficulty(prepared: Prepared, target: float, bins: int = BINS) -> tuple[float, float]:
    """(accuracy, mean tokens) on the held-out half of the same fit with each problem's
    true step soundness p as its confidence and no probe: what a free and exact
    difficulty estimate would reach, the ceiling of any probe."""
    def rows(batches: list[StoredBatch]) -> tuple[dict[str, Row], list[str]]:
        keys = sorted(set.intersection(*(set(b.jobs) for b in batches)))
        table = probe_rows(batches, Probe("none", 0), keys)
        for key, row in table.items():
            spec = TaskSpec.find(key)
            assert spec is not None
            row.confidence = spec.p
        return table, keys

    fit_table, fit_keys = rows(prepared.stored)
    held_table, held_keys = rows(prepared.held_stored)
    solved, tokens = apply_fit(held_table, held_keys,
                               fit_rows(fit_table, fit_keys, bins, target))
    return solved / len(held_keys), tokens / len(held_keys)


def planned_arm(prepared: Prepared, target: float) -> Arm:
    """The fixed arm most accurate on the fit half within target tokens (the cheapest if
    none is), as it did on the held-out half."""
    fit = prepared.fit_arms
    within = [a for a in fit if a.mean_tokens <= target] or [min(fit, key=lambda a: a.mean_tokens)]
    name = max(within, key=lambda a: (a.accuracy, -a.mean_tokens)).name
    return next(a for a in prepared.held_arms if a.name == name)


def frontier(arms: Sequence[Arm], tokens: float) -> float:
    """The fixed strategies' best accuracy at this mean token count, mixing two of them
    (some problems with one, the rest with the other) where that beats any single one:
    the upper concave hull of (tokens, accuracy), read at `tokens`."""
    points = sorted((a.mean_tokens, a.accuracy) for a in arms)
    best = max((acc for t, acc in points if t <= tokens), default=0.0)
    for t1, a1 in points:
        for t2, a2 in points:
            if t1 < tokens < t2:
                best = max(best, a1 + (a2 - a1) * (tokens - t1) / (t2 - t1))
    return best


def evaluate(sessions: SessionFactory, prepared: Prepared, held_out: Sequence[ProblemIn],
             target: float, quality: float, bins: int = BINS, probe: int = PROBE) -> Comparison:
    """Fit a policy for this target on the fit half; run compute_optimal on the held-out
    half; compare with the planned fixed arm and with the best fixed arm that spends no
    more (1% slack: the fixed arms' tokens are scaled estimates, compute_optimal's are
    measured)."""
    held_arms = prepared.held_arms
    policy = fit_policy(prepared.stored, probe=probe, bins=bins, target_tokens=target)
    batch = run_batch(sessions, held_out, quality=quality, strategy="compute_optimal",
                      policy=policy.model_dump(mode="json"), **JUDGED)
    with sessions() as session:
        outcomes = job_outcomes(session=session, batch_id=batch)
    optimal = Arm("compute_optimal", {p: c for p, (c, _) in outcomes.items()},
                  {p: float(t) for p, (_, t) in outcomes.items()})
    affordable = [a for a in held_arms if a.mean_tokens <= optimal.mean_tokens * 1.01]
    best = max(affordable or held_arms[:1], key=lambda a: (a.accuracy, -a.mean_tokens))
    planned = planned_arm(prepared, target)
    return Comparison(target, policy, optimal, best, *paired(optimal, best),
                      frontier(held_arms, optimal.mean_tokens), planned,
                      *paired(optimal, planned))


@dataclass(frozen=True)
class Spend:
    n: int  # the batch's n, chosen from the fit's expected costs
    planned_only: tuple[int, float]  # (tokens spent, accuracy) at that n, no ledger
    ledger: tuple[int, float]  # the same with each job following the batch's ledger


def spend_batch(sessions: SessionFactory, prepared: Prepared, problems: Sequence[ProblemIn],
                batch_tokens: int, quality: float, target: float) -> Spend:
    """A policy fitted for `target` tokens per problem on the fit half, run on `problems`
    (the held-out half, or problems unlike those it was fitted on) with n chosen so that
    they are expected to spend batch_tokens in all: once at that n alone, once with the
    ledger (worker.search.policy.allowance)."""
    policy = fit_policy(prepared.stored, probe=PROBE, bins=BINS, target_tokens=target)
    n = budget_for_tokens(policy, batch_tokens, len(problems))
    config: dict[str, Any] = {"strategy": "compute_optimal", "n": n, **JUDGED,
                              "policy": policy.model_dump(mode="json")}
    runs = []
    for ledger in (None, batch_tokens):
        batch = run_batch(sessions, problems, quality=quality, batch_tokens=ledger, **config)
        with sessions() as session:
            outcomes = job_outcomes(session=session, batch_id=batch)
        runs.append((sum(t for _, t in outcomes.values()),
                     sum(c for c, _ in outcomes.values()) / len(outcomes)))
    return Spend(n, runs[0], runs[1])
