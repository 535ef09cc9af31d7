"""compute_optimal against fixed strategies on the ground-truth task, through process_job
into Postgres: a policy fitted on one half of a make_dataset split, run on the other
(lab.compute_optimal_evidence; -m lab.compute_optimal prints the table).

What holds, and is asserted: the fitted policy spends what it was fitted for on unseen
problems (within 10%); at no target is it less accurate than the fixed strategy a user
would have planned from the same runs (2 standard errors of the paired difference), nor
significantly (3) than the best fixed strategy picked in hindsight on the held-out
problems; at low budgets it beats both; where it adapts, bins differ; the fit says
which probes it weighed (by cross-validation); and a batch budget is spent within 5%,
also on problems harder than those the policy was fitted on (the ledger)."""

from typing import Any

import pytest

from lab.compute_optimal_evidence import Comparison, evaluate, prepare, spend_batch
from lab.ground_truth.task import LEVELS, make_dataset
from ttcq.api.datasets import Limits, to_problems

pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]
PROBLEMS, QUALITY = 400, 2.0
TARGETS = (3000.0, 6000.0, 12000.0, 24000.0)


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
    return {t: evaluate(fast_sessions, prepared, halves[1], t, QUALITY) for t in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_the_policy_spends_about_its_target_on_unseen_problems(
    comparisons: dict[float, Comparison], target: float
) -> None:
    assert comparisons[target].optimal.mean_tokens <= 1.1 * target


@pytest.mark.parametrize("target", TARGETS)
def test_never_below_the_fixed_strategy_a_user_would_plan(
    comparisons: dict[float, Comparison], target: float
) -> None:
    c = comparisons[target]
    assert c.planned.mean_tokens <= 1.01 * target
    assert c.planned_difference >= -2 * c.planned_stderr, (c.planned.name, c.planned_difference)


@pytest.mark.parametrize("target", TARGETS)
def test_never_significantly_below_the_best_fixed_strategy_in_hindsight(
    comparisons: dict[float, Comparison], target: float
) -> None:
    c = comparisons[target]
    assert c.fixed.mean_tokens <= 1.01 * c.optimal.mean_tokens
    assert c.difference >= -3 * c.stderr, (c.fixed.name, c.difference, c.stderr)


@pytest.mark.parametrize("target", [3000.0, 6000.0])
def test_beats_every_fixed_strategy_at_low_budgets(
    comparisons: dict[float, Comparison], target: float
) -> None:
    c = comparisons[target]
    assert c.planned_difference > c.planned_stderr, (c.planned.name, c.planned_difference)
    assert c.difference > c.stderr, (c.fixed.name, c.difference, c.stderr)


def test_the_fit_weighs_every_probe_and_adapts_where_it_pays(
    comparisons: dict[float, Comparison],
) -> None:
    for c in comparisons.values():
        probes = ("no probe: ", "agreement of 2: ", "agreement of 4: ", "verifier of 1: ",
                  "verifier of 2: ", "verifier of 4: ")
        assert all(p in c.policy.description for p in probes), c.policy.description
        if c.policy.probe:  # a probe buys different treatment for different problems
            assert len({(b.strategy, b.n) for b in c.policy.bins}) > 1
    low = comparisons[6000.0].policy
    assert low.probe > 0 and low.bins[-1].n > 0  # the hardest problems get more samples


def test_a_batch_budget_is_spent_within_five_percent(
    fast_sessions: Any, halves: Any, prepared: Any,
) -> None:
    """The fit's expected costs pick the batch's n; the ledger keeps the total on budget."""
    total = 12_000 * len(halves[1])
    spend = spend_batch(fast_sessions, prepared, halves[1], total, QUALITY, 12_000.0)
    assert spend.n >= 1 and 0.9 * total <= spend.planned_only[0] <= 1.1 * total
    assert 0.95 * total <= spend.ledger[0] <= 1.05 * total


def test_the_ledger_holds_the_budget_on_problems_unlike_the_fitted_ones(
    fast_sessions: Any, prepared: Any,
) -> None:
    """Fitted on all five levels, run on the two hardest only: n alone (expected costs)
    overspends by a third; following the ledger, the batch spends its budget."""
    # The problems of -m lab.compute_optimal's "levels 4-5 only" rows.
    rows = make_dataset(PROBLEMS // 2, {lv: LEVELS[lv] for lv in (4, 5)}, seed=1015)
    hard = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, len(rows))))
    total = 12_000 * len(hard)
    spend = spend_batch(fast_sessions, prepared, hard, total, QUALITY, 12_000.0)
    assert spend.planned_only[0] > 1.25 * total
    assert 0.95 * total <= spend.ledger[0] <= 1.05 * total
