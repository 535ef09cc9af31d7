"""The issue's evidence on the ground-truth task, measured over hundreds of problems:
early stopping saves tokens at no loss of accuracy beyond a binomial bound, and particle
filtering beats beam search at equal n where the verifier cannot judge the first steps
(bench/adaptive_search.py prints the same numbers)."""

from typing import Any

from worker.ground_truth.measure import measure, sd_of_difference
from worker.ground_truth.task import make_dataset

ROWS = make_dataset(600, seed=5)
TREE: dict[str, Any] = {"n": 16, "verifier": "prm", "aggregation": "last", "quality": 4.0}


def test_early_stopping_saves_tokens_within_the_accuracy_bound() -> None:
    rows = ROWS[:400]
    majority: dict[str, Any] = {"strategy": "majority", "n": 16, "verifier": "none"}
    full = measure(rows, **majority)
    early = measure(rows, **majority, early_stop=0.75, early_stop_round=4, early_stop_min=4)
    assert early.stopped > len(rows) // 4
    assert early.completion_tokens < 0.8 * full.completion_tokens  # at least a fifth saved
    assert early.samples < 0.8 * full.samples
    assert abs(early.accuracy - full.accuracy) < 2 * sd_of_difference(full, early)


def test_particle_filtering_beats_beam_search_when_early_scores_are_noise() -> None:
    beam = measure(ROWS, strategy="beam_search", beam_width=4, noisy_steps=3, **TREE)
    particles = measure(ROWS, strategy="particle_filtering", noisy_steps=3, **TREE)
    # Same budget: every search generates the n solutions' steps once.
    assert particles.samples == beam.samples
    assert particles.accuracy - beam.accuracy > 2 * sd_of_difference(beam, particles)


def test_with_a_sound_judge_throughout_particle_filtering_has_no_edge() -> None:
    rows = ROWS[:300]
    beam = measure(rows, strategy="beam_search", beam_width=4, **TREE)
    particles = measure(rows, strategy="particle_filtering", **TREE)
    assert beam.accuracy >= particles.accuracy
