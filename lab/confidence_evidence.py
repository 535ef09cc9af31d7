"""Token confidence as compute_optimal's difficulty signal, on the ground-truth task
(lab.ground_truth, whose engine's token confidence is higher while a trace is sound:
lab.ground_truth.confidence).

- The signal: each problem's probe confidence (the mean of its first PROBE samples'
  lowest group confidences) per level, against what the confidence model's parameters
  say it should be (expected_probe_confidence: no search code).
- What it buys: fixed strategies run on both halves of a make_dataset split, in memory
  (each search as process_job runs it, no database); policies fitted on the first half
  (worker.search.policy_fit) with the agreement and with the confidence signal at the
  same token target; compute_optimal run with each on the held-out half, compared
  problem by problem.

`python -m lab.confidence_evidence` prints the tables (docs/reasoning.md quotes them)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.compute_optimal_evidence import Arm
from lab.ground_truth.confidence import Confidence
from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import LEVELS, make_dataset
from lab.ground_truth.verifier import GroundTruthVerifier
from ttcq.worker.search.config import make_config
from ttcq.worker.search.policy import Policy
from ttcq.worker.search.policy_fit import fit_policy
from ttcq.worker.search.policy_runs import Sample, StoredBatch, StoredJob
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.scoring import aggregate
from ttcq.worker.search.types import Aggregation, Problem, SearchResult
from ttcq.worker.verifiers.factory import make_verifier

PROBE, BINS, QUALITY = 4, 5, 2.0
# A window no longer than a step: a trace's lowest group is then its level (sound or
# not) plus its offset, which is what expected_probe_confidence assumes.
WINDOW = 16
JUDGED = {"verifier": "self_judge"}
FIXED: dict[str, dict[str, Any]] = {
    "majority": {"strategy": "majority", "n": 16, "verifier": "none",
                 "confidence_top_k": 20, "confidence_window": WINDOW},
    "dvts": {"strategy": "dvts", "n": 16, "beam_width": 4, **JUDGED},
    "beam_search_8": {"strategy": "beam_search", "n": 8, "beam_width": 4, **JUDGED},
}


def solve(row: dict[str, Any], config: dict[str, Any]) -> SearchResult:
    """One search on a fresh ground-truth engine (its prefix cache empty)."""
    search = make_config(seed=0, **config)
    engine = GroundTruthEngine(GroundTruthVerifier(QUALITY))
    problem = Problem(row["problem"], gold=row["answer"])
    return run_search(problem, search, engine, make_verifier(search.verifier, engine))


def stored_job(result: SearchResult, gold: str, aggregation: Aggregation) -> StoredJob:
    """A search result as `ttcq policy fit` reads it back from storage (db.policy_data)."""
    def right(index: int) -> bool:
        c = result.candidates[index]
        return c.finished and c.canonical == gold

    samples = [Sample(c.canonical if c.finished else None, right(c.index),
                      aggregate(c.step_scores, aggregation) if c.finished and c.step_scores
                      else None, c.confidence)
               for c in result.candidates[:PROBE]]
    generation, verification = result.generation, result.verification
    return StoredJob(generation.prompt_tokens + generation.completion_tokens,
                     verification.prompt_tokens + verification.completion_tokens,
                     {n: right(i) for n, i in result.curve.items()}, samples)


def run_fixed(rows: Sequence[dict[str, Any]]) -> list[StoredBatch]:
    out = []
    for name, config in FIXED.items():
        full = make_config(seed=0, **config).model_dump(mode="json")
        jobs = {row["problem"]: stored_job(solve(row, config), row["answer"],
                                           full["aggregation"]) for row in rows}
        out.append(StoredBatch(name, full, jobs))
    return out


def expected_probe_confidence(p: float, steps: int, model: Confidence | None = None
                              ) -> tuple[float, float]:
    """(mean, sd) of one sample's lowest group confidence over a window within a step: a
    sound trace (probability p ** steps) is at max(0, sound + offset), an unsound one at
    max(0, unsound + offset), the offset normal with sd spread."""
    model = model or Confidence()
    s = p**steps
    moments = [_clipped_moments(level, model.spread) for level in (model.sound, model.unsound)]
    mean = s * moments[0][0] + (1 - s) * moments[1][0]
    square = s * moments[0][1] + (1 - s) * moments[1][1]
    return mean, math.sqrt(max(square - mean * mean, 0.0))


def _clipped_moments(mu: float, sigma: float) -> tuple[float, float]:
    """E[X] and E[X^2] of X = max(0, N(mu, sigma^2))."""
    z = mu / sigma
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return mu * cdf + sigma * pdf, (mu * mu + sigma * sigma) * cdf + mu * sigma * pdf


@dataclass(frozen=True)
class LevelSignal:
    level: int
    problems: int
    measured: float  # mean probe confidence over the level's problems
    expected: float
    sd: float  # of that mean, from the model

    @property
    def z(self) -> float:
        return (self.measured - self.expected) / self.sd


def signal_by_level(majority: StoredBatch, rows: Sequence[dict[str, Any]]) -> list[LevelSignal]:
    out = []
    for level, spec in sorted(LEVELS.items()):
        mine = [r for r in rows if r["level"] == level]
        probes = [sum(s.confidence or 0.0 for s in majority.jobs[r["problem"]].samples)
                  / PROBE for r in mine]
        mean, sd = expected_probe_confidence(spec.p, spec.steps)
        out.append(LevelSignal(level, len(mine), sum(probes) / len(probes), mean,
                               sd / math.sqrt(PROBE * len(mine))))
    return out


@dataclass(frozen=True)
class Outcome(Arm):
    """compute_optimal with one policy on the held-out problems."""

    policy: Policy


def run_policy(policy: Policy, rows: Sequence[dict[str, Any]]) -> Outcome:
    config = {"strategy": "compute_optimal", "policy": policy.model_dump(mode="json"), **JUDGED}
    correct, tokens = {}, {}
    for row in rows:
        result = solve(row, config)
        used = result.generation.prompt_tokens + result.generation.completion_tokens
        used += result.verification.prompt_tokens + result.verification.completion_tokens
        correct[row["problem"]] = result.answer == row["answer"]
        tokens[row["problem"]] = float(used)
    return Outcome(f"compute_optimal ({policy.difficulty})", correct, tokens, policy)


def paired(a: Outcome, b: Outcome) -> tuple[float, float]:
    """Mean and standard error of a's correct minus b's over the same problems."""
    diffs = [int(a.correct[p]) - int(b.correct[p]) for p in a.correct]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1)
    return mean, math.sqrt(var / len(diffs))


def split(problems: int, seed: int = 11) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = make_dataset(problems, seed=seed)
    return rows[0::2], rows[1::2]


def compare(fit: list[StoredBatch], held: Sequence[dict[str, Any]], target: float,
            signals: Sequence[str] = ("agreement", "confidence")) -> dict[str, Outcome]:
    """Policies fitted for the same target with each signal, run held out (auto: the fit
    picks the signal and probe size by cross-validation)."""
    return {signal: run_policy(fit_policy(fit, probe=PROBE, bins=BINS, target_tokens=target,
                                          difficulty=signal), held)  # type: ignore[arg-type]
            for signal in signals}


def main(problems: int = 1000, targets: Sequence[float] = (3000.0, 6000.0, 12000.0)) -> None:
    fit_rows, held_rows = split(problems)
    fit = run_fixed(fit_rows)
    print("level | problems | probe confidence | expected | z")  # noqa: T201
    for s in signal_by_level(fit[0], fit_rows):
        print(f"{s.level} | {s.problems} | {s.measured:.3f} | {s.expected:.3f} | {s.z:+.2f}")  # noqa: T201
    print("target | signal | probe | tokens | accuracy | minus agreement | bins")  # noqa: T201
    for target in targets:
        outcomes = compare(fit, held_rows, target, ("agreement", "confidence", "auto"))
        for signal, o in outcomes.items():
            diff, se = paired(o, outcomes["agreement"])
            bins = ", ".join(f">={b.min_confidence:.2f}: {b.strategy} {b.n}"
                             for b in o.policy.bins)
            probe = f"{o.policy.difficulty} of {o.policy.probe}" if o.policy.probe else "none"
            print(f"{target:.0f} | {signal} | {probe} | {o.mean_tokens:.0f} | "  # noqa: T201
                  f"{o.accuracy:.3f} | {diff:+.3f} ± {se:.3f} | {bins}")


if __name__ == "__main__":
    main()
