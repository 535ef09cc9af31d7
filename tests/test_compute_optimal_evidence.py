"""compute_optimal against fixed strategies on the ground-truth task, through process_job
into Postgres: a policy fitted on one half of a make_dataset split, run on the other
(worker.compute_optimal_evidence; scripts/compute_optimal_evidence.py prints the table).

What holds, and is asserted: the fitted policy spends what it was fitted for on unseen
problems (within 10%), it adapts (bins differ), it beats the best single fixed strategy
at equal or fewer tokens at a low budget, and nowhere is it significantly (3 standard
errors of the paired difference) less accurate than that strategy."""

from typing import Any

import pytest

from api.datasets import Limits, to_problems
from worker.compute_optimal_evidence import Comparison, evaluate, prepare, spend_batch
from worker.ground_truth.task import make_dataset

pytestmark = pytest.mark.timeout(900)
PROBLEMS, QUALITY = 400, 2.0
TARGETS = (3000.0, 6000.0, 24000.0)


@pytest.fixture(scope="module")
def halves() -> tuple[list[Any], list[Any]]:
    rows = make_dataset(PROBLEMS, seed=11)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, PROBLEMS)))
    return problems[0::2], problems[1::2]


@pytest.fixture(scope="module")
def prepared(fast_sessions: Any, halves: tuple[list[Any], list[Any]]) -> Any:
    return prepare(fast_sessions, *halves, QUALITY)


@pytest.fixture(scope="module")
def comparisons(fast_sessions: Any, halves: Any, prepared: Any) -> dict[float, Comparison]:
    stored, arms = prepared
    return {t: evaluate(fast_sessions, stored, arms, halves[1], t, QUALITY) for t in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_the_policy_spends_about_its_target_on_unseen_problems(
    comparisons: dict[float, Comparison], target: float
) -> None:
    assert comparisons[target].optimal.mean_tokens <= 1.1 * target


@pytest.mark.parametrize("target", TARGETS)
def test_never_significantly_below_the_best_fixed_strategy(
    comparisons: dict[float, Comparison], target: float
) -> None:
    c = comparisons[target]
    assert c.fixed.mean_tokens <= 1.01 * c.optimal.mean_tokens
    assert c.difference >= -3 * c.stderr, (c.fixed.name, c.difference, c.stderr)


def test_beats_the_best_fixed_strategy_at_a_low_budget(
    comparisons: dict[float, Comparison],
) -> None:
    c = comparisons[6000.0]
    assert c.difference > c.stderr, (c.fixed.name, c.difference, c.stderr)


def test_the_policy_adapts_to_difficulty(comparisons: dict[float, Comparison]) -> None:
    for c in comparisons.values():
        assert len({(b.strategy, b.n) for b in c.policy.bins}) > 1
        assert c.policy.bins[-1].strategy != "majority"  # the hardest bin gets a search


def test_a_batch_budget_is_spent_within_ten_percent(
    fast_sessions: Any, halves: Any, prepared: Any,
) -> None:
    """In expectation only (no ledger): the fit's per-bin costs, on unseen problems."""
    stored, _ = prepared
    total = 12_000 * len(halves[1])
    n, spent = spend_batch(fast_sessions, stored, halves[1], total, QUALITY, 12_000.0)
    assert n >= 1 and 0.9 * total <= spent <= 1.1 * total
