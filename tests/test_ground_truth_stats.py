"""ttcq's accuracy curves are right: batches of the ground-truth task (lab.ground_truth)
run through process_job into Postgres, and the curves users read (v_accuracy_by_budget,
and the report's numbers) match each strategy's reference value at every budget, exact
where a formula exists and simulated from the model where not, within 3.5 standard
deviations of a measurement over these problems; and the published shapes appear."""

import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from lab.ground_truth.expected import Expected, curve
from lab.ground_truth.task import make_dataset
from lab.ground_truth.verifier import GroundTruthVerifier
from lab.ground_truth_batches import BUDGETS, RUNS, run_batch
from ttcq.api.datasets import Limits, to_problems
from ttcq.api.report.data import build_report
from ttcq.db.batches import get_batch
from ttcq.worker.rescoring import rescore_batch

pytestmark = pytest.mark.servers

PROBLEMS = 300  # 60 per level
QUALITY = 2.0  # the self-judge: a sound step scores Beta(2, 1), an unsound one Beta(1, 2)
BOUND = 3.5  # standard deviations
CASES = [(run, n) for run, budgets in BUDGETS.items() for n in budgets]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return make_dataset(PROBLEMS, seed=7)


@pytest.fixture(scope="module")
def batches(fast_sessions: Any, rows: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, PROBLEMS)))
    return {name: run_batch(fast_sessions, problems, quality=QUALITY, **config)
            for name, config in RUNS.items()}


@pytest.fixture(scope="module")
def measured(fast_sessions: Any, batches: dict[str, uuid.UUID]) -> dict[tuple[str, int], float]:
    """(run, budget) -> accuracy, read from v_accuracy_by_budget over all levels."""
    query = text(
        "SELECT strategy, beam_width, lookahead, budget, SUM(correct), SUM(graded) "
        "FROM v_accuracy_by_budget GROUP BY strategy, beam_width, lookahead, budget")
    with fast_sessions() as session:
        rows = session.exec(query).all()  # type: ignore[call-overload]
    by_view = {(s, n): int(correct) / int(graded) for s, _, _, n, correct, graded in rows}
    return {(run, n): by_view[RUNS[run]["strategy"], n] for run, n in CASES}


@pytest.fixture(scope="module")
def expected(rows: list[dict[str, Any]]) -> dict[tuple[str, int], Expected]:
    levels = levels_of(rows)
    out = {}
    for run, budgets in BUDGETS.items():
        config = RUNS[run]
        for n, value in curve(config["strategy"], config, budgets, QUALITY, levels).items():
            out[run, n] = value
    return out


@pytest.mark.parametrize(("run", "budget"), CASES)
def test_measured_accuracy_matches_the_reference(
    run: str, budget: int, measured: dict[tuple[str, int], float],
    expected: dict[tuple[str, int], Expected],
) -> None:
    value, reference = measured[run, budget], expected[run, budget]
    assert abs(reference.z(value)) < BOUND, (
        f"{run} at n={budget}: measured {value:.3f}, reference {reference.accuracy:.3f}")


def test_the_report_counts_what_the_view_counts(
    fast_sessions: Any, batches: dict[str, uuid.UUID], measured: dict[tuple[str, int], float]
) -> None:
    with fast_sessions() as session:
        owned = [get_batch(session=session, batch_id=b) for b in batches.values()]
        report = build_report(session=session, batches=[b for b in owned if b])
    points = {(p.configuration.split()[0], p.budget): p for p in report.points if p.level is None}
    for run, n in CASES:
        point = points[RUNS[run]["strategy"], n]
        assert point.correct / point.graded == measured[run, n]
        assert point.graded == PROBLEMS and point.ci_low < measured[run, n] < point.ci_high
    assert report.levels == ["1", "2", "3", "4", "5"]  # MATH-500's int levels, from meta


def test_majority_plateaus_where_a_verifier_keeps_climbing(
    measured: dict[tuple[str, int], float]
) -> None:
    majority_gain = measured["majority", 16] - measured["majority", 4]
    verified_gain = measured["best_of_n", 16] - measured["best_of_n", 4]
    assert majority_gain < 0.1 < verified_gain


def test_a_good_verifier_lets_best_of_n_pass_majority(
    measured: dict[tuple[str, int], float]
) -> None:
    assert measured["best_of_n", 16] > measured["majority", 16] + 0.15


def test_beam_search_is_ahead_of_best_of_n_at_a_small_budget(
    measured: dict[tuple[str, int], float]
) -> None:
    assert measured["beam_search_4", 4] > measured["best_of_n", 4]


# Rescoring the best-of-N batch: by vote, with the judge the search used, with a coin.
RESCORES: dict[str, dict[str, Any]] = {
    "vote": {"selection": "majority"},
    "same_judge": {"verifier": GroundTruthVerifier(QUALITY)},
    "coin": {"verifier": GroundTruthVerifier(1.0, salt="coin")},
}


@pytest.fixture(scope="module")
def rescores(fast_sessions: Any, batches: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    out = {}
    for name, how in RESCORES.items():
        with fast_sessions() as session:
            batch = get_batch(session=session, batch_id=batches["best_of_n"])
            assert batch is not None
            out[name] = rescore_batch(session=session, batch=batch, **how).rescore_id
    return out


def rescored_curve(fast_sessions: Any, rescore_id: uuid.UUID) -> dict[int, float]:
    query = text("SELECT budget, SUM(correct), SUM(graded) FROM v_rescore_accuracy_by_budget "
                 "WHERE rescore_id = :id GROUP BY budget")
    with fast_sessions() as session:
        rows = session.exec(query, params={"id": rescore_id}).all()  # type: ignore[call-overload]
    return {n: int(correct) / int(graded) for n, correct, graded in rows}


def levels_of(rows: list[dict[str, Any]]) -> Counter[int]:
    return Counter(row["level"] for row in rows)


def test_best_of_n_rescored_by_vote_is_majority_voting(
    fast_sessions: Any, rescores: dict[str, uuid.UUID], rows: list[dict[str, Any]]
) -> None:
    measured = rescored_curve(fast_sessions, rescores["vote"])
    reference = curve("majority", RUNS["majority"], BUDGETS["majority"], QUALITY, levels_of(rows))
    assert set(measured) == set(reference)
    for n, value in measured.items():
        assert abs(reference[n].z(value)) < BOUND, (n, value, reference[n].accuracy)


def test_rescoring_with_the_search_s_own_judge_makes_the_same_choices(
    fast_sessions: Any, rescores: dict[str, uuid.UUID]
) -> None:
    query = text("SELECT COUNT(*), SUM(CASE WHEN r.candidate_idx = p.candidate_idx THEN 1 "
                 "ELSE 0 END) FROM rescore_point r JOIN budget_point p "
                 "ON p.job_id = r.job_id AND p.n = r.n WHERE r.rescore_id = :id")
    with fast_sessions() as session:
        total, same = session.exec(  # type: ignore[call-overload]
            query, params={"id": rescores["same_judge"]}).one()
    assert total == PROBLEMS * len(BUDGETS["best_of_n"]) and same == total


def test_a_coin_as_verifier_leaves_one_sample_s_chance_and_its_cost_apart(
    fast_sessions: Any, rescores: dict[str, uuid.UUID], rows: list[dict[str, Any]]
) -> None:
    measured = rescored_curve(fast_sessions, rescores["coin"])
    reference = curve("best_of_n", RUNS["best_of_n"], BUDGETS["best_of_n"], 1.0,
                      levels_of(rows))
    for n, value in measured.items():
        assert abs(reference[n].z(value)) < BOUND, (n, value, reference[n].accuracy)
    query = text("SELECT COUNT(*), SUM(verifier_tokens), SUM(verifier_calls) FROM rescore_cost "
                 "WHERE rescore_id = :id")
    with fast_sessions() as session:
        jobs, tokens, calls = session.exec(  # type: ignore[call-overload]
            query, params={"id": rescores["coin"]}).one()
    assert (jobs, calls) == (PROBLEMS, PROBLEMS) and tokens > 0


def test_the_report_shows_each_rescore_as_a_line_of_its_own(
    fast_sessions: Any, batches: dict[str, uuid.UUID], rescores: dict[str, uuid.UUID]
) -> None:
    with fast_sessions() as session:
        batch = get_batch(session=session, batch_id=batches["best_of_n"])
        assert batch is not None
        report = build_report(session=session, batches=[batch])
    names = [line.configuration for line in report.lines]
    assert len(set(names)) == 4 and sum("rescored" in name for name in names) == 3
    assert {r for line in report.lines for r in line.rescore_ids} == set(rescores.values())
