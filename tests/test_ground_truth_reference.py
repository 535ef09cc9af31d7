"""The reference values themselves: the exact formulas agree with brute-force draws from the
model, and the simulators agree with closed forms where the search reduces to one."""

import math

import numpy as np
import pytest

from lab.ground_truth import reference, simulate
from lab.ground_truth.task import TaskSpec

SPEC = TaskSpec("r", 0.7, 3, "1", (("2", 0.6), ("3", 0.4)))
DRAWS = 200_000


def draws(spec: TaskSpec, quality: float, n: int, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray]:
    """(answer index: 0 gold, k wrong answer k; min-aggregated score) of DRAWS x n samples."""
    sound = np.cumprod(rng.random((DRAWS, n, spec.steps)) < spec.p, axis=2).astype(bool)
    high = rng.random(sound.shape) ** (1 / quality)
    scores = np.where(sound, high, 1 - high).min(axis=2)
    weights = [w for _, w in spec.wrong]
    wrong = 1 + rng.choice(len(weights), size=(DRAWS, n), p=weights)
    return np.where(sound[:, :, -1], 0, wrong), scores


def close(value: float, estimate: float) -> bool:
    return abs(value - estimate) < 4 * math.sqrt(max(value * (1 - value), 1e-4) / DRAWS)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_majority_matches_votes_drawn_from_the_model(n: int) -> None:
    answers, _ = draws(SPEC, 2.0, n, np.random.default_rng(n))
    counts = np.stack([(answers == k).sum(axis=1) for k in range(3)], axis=1)
    # Ties go to the answer seen first: the first sample whose answer has the top count.
    has_top = np.take_along_axis(counts, answers, axis=1) == counts.max(axis=1, keepdims=True)
    winner = answers[np.arange(DRAWS), has_top.argmax(axis=1)]
    assert close(reference.majority_accuracy(SPEC, n), float(np.mean(winner == 0)))


def test_one_sample_is_right_with_p_to_the_power_of_steps() -> None:
    assert reference.majority_accuracy(SPEC, 1) == pytest.approx(0.7**3)
    assert reference.best_of_n_accuracy(SPEC, 3.0, "min", 1) == pytest.approx(0.7**3, abs=1e-6)


@pytest.mark.parametrize("n", [2, 5])
def test_best_of_n_matches_scores_drawn_from_the_model(n: int) -> None:
    answers, scores = draws(SPEC, 2.0, n, np.random.default_rng(10 + n))
    best = answers[np.arange(DRAWS), scores.argmax(axis=1)]
    assert close(reference.best_of_n_accuracy(SPEC, 2.0, "min", n), float(np.mean(best == 0)))


@pytest.mark.parametrize("n", [2, 5])
def test_weighted_best_of_n_matches_scores_drawn_from_the_model(n: int) -> None:
    answers, scores = draws(SPEC, 2.0, n, np.random.default_rng(20 + n))
    sums = np.stack([np.where(answers == k, scores, 0).sum(axis=1) for k in range(3)], axis=1)
    won = float(np.mean(sums.argmax(axis=1) == 0))
    assert abs(reference.weighted_best_of_n_accuracy(SPEC, 2.0, "min", n) - won) < 0.004


def test_a_useless_verifier_leaves_one_sample_s_chance() -> None:
    for n in (2, 8):
        assert reference.best_of_n_accuracy(SPEC, 1.0, "last", n) == pytest.approx(
            0.7**3, abs=1e-4)


def model(quality: float, spec: TaskSpec = SPEC) -> simulate.Model:
    return simulate.Model(spec, quality, "min", np.random.default_rng(3))


def test_beam_search_with_a_perfect_judge_keeps_a_sound_step_when_one_is_there() -> None:
    # One beam (N = M) and a judge that never errs: each step fails only if all M do.
    m, steps, p = 4, SPEC.steps, SPEC.p
    value = simulate.beam_search(model(1e9), m, m, 50_000)
    assert abs(value - (1 - (1 - p) ** m) ** steps) < 0.01


def test_tree_searches_with_a_useless_judge_find_one_sample_s_chance() -> None:
    assert abs(simulate.beam_search(model(1.0), 16, 4, 50_000) - 0.7**3) < 0.01
    assert abs(simulate.dvts(model(1.0), 16, 4, 50_000)[16] - 0.7**3) < 0.01


def test_dvts_subtrees_are_independent_greedy_searches() -> None:
    # With a perfect judge a subtree fails only when all M children of some step slip, and
    # the best final leaf over k subtrees is right when any subtree is.
    m, steps, p = 2, SPEC.steps, SPEC.p
    one = (1 - (1 - p) ** m) ** steps
    curve = simulate.dvts(model(1e9), 8, m, 50_000)
    for n, value in curve.items():
        assert abs(value - (1 - (1 - one) ** (n // m))) < 0.01


def test_lookahead_with_a_perfect_judge_sees_the_slip_one_step_later() -> None:
    # p < 0.5: the greedy step slips, so every tip is unsound and the finished greedy tips
    # (wrong answers) outrank the beams' own children on ties: nothing is ever right.
    hard = TaskSpec("h", 0.45, 3, "1", (("2", 1.0),))
    assert simulate.beam_search(model(1e9, hard), 4, 4, 20_000, lookahead=1) == 0.0
