"""Step-score aggregation, final-answer selection and budget curves (pure functions)."""

import pytest

from ttcq.worker.search.scoring import aggregate, budget_curve, budget_points, select
from ttcq.worker.search.types import Candidate


def cand(
    index: int, canonical: str | None, score: float | None = None, finish: str = "stop",
    group: int | None = None,
) -> Candidate:
    return Candidate(
        index=index,
        group=index if group is None else group,
        leaf_id=index,
        text="",
        finish=finish,  # type: ignore[arg-type]
        answer=canonical,
        canonical=canonical,
        score=score,
    )


@pytest.mark.parametrize(
    ("method", "expected"),
    [("last", 0.5), ("min", 0.2), ("prod", 0.9 * 0.2 * 0.5), ("mean", 1.6 / 3)],
)
def test_aggregate(method: str, expected: float) -> None:
    assert aggregate([0.9, 0.2, 0.5], method) == pytest.approx(expected)  # type: ignore[arg-type]


def test_aggregate_of_no_steps_is_zero() -> None:
    assert aggregate([], "min") == 0.0


def test_naive_picks_the_best_score() -> None:
    pool = [cand(0, "1", 0.3), cand(1, "2", 0.9), cand(2, "1", 0.5)]
    assert select(pool, "naive") == 1


def test_weighted_sums_scores_per_answer() -> None:
    pool = [cand(0, "1", 0.5), cand(1, "2", 0.9), cand(2, "1", 0.5)]
    assert pool[select(pool, "weighted")].canonical == "1"


def test_majority_counts_votes_and_then_prefers_the_best_scored_voter() -> None:
    pool = [cand(0, "2", 0.9), cand(1, "1", 0.2), cand(2, "1", 0.6)]
    assert select(pool, "majority") == 2


def test_ties_go_to_the_answer_seen_first() -> None:
    pool = [cand(0, "7"), cand(1, "8"), cand(2, "8"), cand(3, "7")]
    assert select(pool, "majority") == 0


@pytest.mark.parametrize("method", ["naive", "weighted", "majority"])
def test_a_truncated_candidate_never_beats_a_finished_one(method: str) -> None:
    pool = [cand(0, "5", 1.0, finish="length"), cand(1, "5", 1.0, finish="length"),
            cand(2, "6", 0.1)]
    assert select(pool, method) == 2  # type: ignore[arg-type]


def test_a_truncated_pick_when_nothing_finished() -> None:
    pool = [cand(0, None, 0.2, finish="length"), cand(1, None, 0.7, finish="length")]
    assert select(pool, "majority") == 1


def test_finished_without_answer_beats_truncated() -> None:
    pool = [cand(0, None, 0.9, finish="length"), cand(1, None, 0.1)]
    assert select(pool, "naive") == 1


def test_selecting_from_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        select([], "naive")


def test_budget_points() -> None:
    assert budget_points(8) == [1, 2, 4, 8]
    assert budget_points(6) == [1, 2, 4, 6]
    assert budget_points(16, group_size=4) == [4, 8, 16]


def test_budget_curve_reads_the_first_n_candidates() -> None:
    # The later samples agree on "9"; with only the first ones, "3" wins.
    pool = [cand(0, "3"), cand(1, "3"), cand(2, "9"), cand(3, "9"), cand(4, "9")]
    curve = budget_curve(pool, "majority", 5)
    assert curve == {1: 0, 2: 0, 4: 0, 5: 2}


def test_budget_curve_counts_groups_of_leaves() -> None:
    # DVTS: 2 leaves per subtree; budget n reads the first n/2 subtrees.
    pool = [cand(0, "1", 0.2, group=0), cand(1, "2", 0.9, group=1)]
    assert budget_curve(pool, "naive", 4, group_size=2) == {2: 0, 4: 1}
