"""The issue's evidence for mcts on the ground-truth task, over 600 problems at about equal
generated tokens (-m lab.mcts_evidence prints the same numbers): MCTS with verifier values
beats one sample and best-of-N with no more tokens and loses to beam search, which this
judge (quality 4) lets keep a sound path at every depth; with rollout values it beats one
sample only."""

import pytest

from lab.ground_truth.measure import Measured, measure, sd_of_difference
from lab.ground_truth.task import make_dataset
from lab.mcts_evidence import JUDGE, RUNS

pytestmark = pytest.mark.servers

ROWS = make_dataset(600, seed=5)


@pytest.fixture(scope="module")
def measured() -> dict[str, Measured]:
    return {name: measure(ROWS, **JUDGE, **config) for name, config in RUNS.items()}


def _beats(a: Measured, b: Measured) -> bool:
    return a.accuracy - b.accuracy > 2 * sd_of_difference(a, b)


def test_mcts_beats_sampling_with_no_more_tokens(measured: dict[str, Measured]) -> None:
    mcts, best_of_n = measured["mcts S=16 M=4 c=1"], measured["best_of_n N=16"]
    assert mcts.completion_tokens <= best_of_n.completion_tokens
    assert _beats(mcts, measured["one sample"]) and _beats(mcts, best_of_n)
    # Greedy on Q revisits its best answer for free: a third of the tokens, still ahead.
    greedy = measured["mcts S=16 M=4 c=0"]
    assert greedy.completion_tokens < best_of_n.completion_tokens / 2
    assert _beats(greedy, best_of_n)


def test_beam_search_beats_mcts_at_equal_tokens(measured: dict[str, Measured]) -> None:
    beam, mcts = measured["beam_search N=16 M=4"], measured["mcts S=16 M=4 c=1"]
    assert mcts.completion_tokens <= beam.completion_tokens
    assert _beats(beam, mcts)


def test_rollout_values_beat_one_sample_but_not_best_of_n(
    measured: dict[str, Measured],
) -> None:
    """A greedy rollout on this task is sound iff its prefix is and p >= 0.5: it adds
    little to the verifier's step score and costs the rest of a solution, so 5
    simulations are all the tokens allow."""
    rollout, best_of_n = measured["mcts rollout S=5 M=4 c=1"], measured["best_of_n N=16"]
    assert rollout.completion_tokens <= best_of_n.completion_tokens
    assert _beats(rollout, measured["one sample"]) and _beats(best_of_n, rollout)
