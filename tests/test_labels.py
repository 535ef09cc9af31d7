"""Step labels against the truth of the ground-truth task, where every step says whether
the solution is still sound after it: from a sound prefix with k steps left a rollout
reaches the gold with probability p^k, from an unsound one never. So Math-Shepherd's hard
labels call a sound step bad with probability (1 - p^k)^R, its soft labels average p^k,
and OmegaPRM's binary search finds the first unsound step exactly when every probe it
makes at a sound prefix sees a success. The references below are computed from the task's
parameters and the steps' own markers, not by the labelling code; measured counts must lie
within 3.5 standard deviations of them."""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import Level, TaskSpec, make_dataset, sound_path
from ttcq.worker.search.config import make_config
from ttcq.worker.search.strategies import run_base_strategy
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import NoVerifier

STEPS = 5
LEVELS = {1: Level(0.85, STEPS), 2: Level(0.72, STEPS), 3: Level(0.6, STEPS)}
ROLLOUTS = 4
SOLUTIONS = 4


@dataclass(frozen=True)
class Labelled:
    spec: TaskSpec
    result: SearchResult


def _labelled(method: str, problems: int, seed: int) -> list[Labelled]:
    config = make_config(strategy=method, n=SOLUTIONS, rollouts=ROLLOUTS, verifier="none")
    engine = GroundTruthEngine()
    out = []
    for row in make_dataset(problems, LEVELS, seed=seed):
        spec = TaskSpec.find(row["problem"])
        assert spec is not None
        result = run_base_strategy(Problem(row["problem"], row["answer"]), config, engine,
                                   NoVerifier())
        out.append(Labelled(spec, result))
    return out


def _truth(result: SearchResult, candidate: int) -> list[bool]:
    """Whether the solution is sound after each of its steps, read off the step markers."""
    return [sound for _, sound in sound_path([result.candidates[candidate].text])]


def _within(observed: float, expected: float, variance: float) -> None:
    sd = math.sqrt(variance)
    assert abs(observed - expected) <= 3.5 * sd + 1e-9, (observed, expected, sd)


@pytest.fixture(scope="module")
def shepherd() -> list[Labelled]:
    return _labelled("math_shepherd", 240, seed=5)


@pytest.fixture(scope="module")
def omega() -> list[Labelled]:
    return _labelled("omega", 240, seed=5)


def _rolled_labels(runs: list[Labelled]) -> Iterator[tuple[float, int, bool, float, bool]]:
    """(p, k, sound, soft, hard) of every label that rollouts measured."""
    for run in runs:
        for label in run.result.labels:
            if label.rollouts == 0:
                continue
            assert label.soft is not None
            sound = _truth(run.result, label.candidate)[label.step]
            yield run.spec.p, STEPS - label.step - 1, sound, label.soft, label.hard


def test_math_shepherd_labels_every_step_of_every_solution(shepherd: list[Labelled]) -> None:
    for run in shepherd:
        solutions = [c for c in run.result.candidates if c.index < SOLUTIONS]
        for solution in solutions:
            steps = [label for label in run.result.labels if label.candidate == solution.index]
            assert [label.step for label in steps] == list(range(len(_truth(run.result,
                                                                             solution.index))))
            assert [label.rollouts for label in steps] == [ROLLOUTS] * (STEPS - 1) + [0]
        assert sum(label.rollouts for label in run.result.labels) == (
            len(run.result.candidates) - SOLUTIONS)  # each rollout is a candidate


def test_math_shepherd_never_calls_an_unsound_step_good(shepherd: list[Labelled]) -> None:
    unsound = [(soft, hard) for _, _, sound, soft, hard in _rolled_labels(shepherd) if not sound]
    assert len(unsound) > 100
    assert all(soft == 0.0 and not hard for soft, hard in unsound)


def test_math_shepherd_hard_labels_miss_sound_steps_at_the_analytic_rate(
    shepherd: list[Labelled],
) -> None:
    misses = expected = variance = 0.0
    sound_steps = 0
    for p, k, sound, _, hard in _rolled_labels(shepherd):
        if sound:
            miss = (1 - p**k) ** ROLLOUTS
            misses += not hard
            expected += miss
            variance += miss * (1 - miss)
            sound_steps += 1
    assert sound_steps > 1000 and misses > 20
    _within(misses, expected, variance)


def test_math_shepherd_soft_labels_are_unbiased(shepherd: list[Labelled]) -> None:
    total = expected = variance = 0.0
    for p, k, sound, soft, _ in _rolled_labels(shepherd):
        if sound:
            total += soft
            expected += p**k
            variance += p**k * (1 - p**k) / ROLLOUTS
    _within(total, expected, variance)


def test_a_finished_solution_s_last_step_is_its_grade(shepherd: list[Labelled]) -> None:
    for run in shepherd:
        for label in run.result.labels:
            if label.step == STEPS - 1:
                correct = run.result.candidates[label.candidate].answer == run.spec.answer
                assert (label.hard, label.soft, label.rollouts) == (correct, float(correct), 0)


def _ideal_probes(first_unsound: int) -> list[int]:
    """The prefixes a binary search probes when every probe tells the truth: prefix -1
    (the bare problem) is sound, the whole wrong solution (STEPS - 1) is not."""
    low, high, probes = -1, STEPS - 1, []
    while high - low > 1:
        middle = (low + high) // 2
        probes.append(middle)
        low, high = (middle, high) if middle < first_unsound else (low, middle)
    return probes


def test_omega_finds_the_first_unsound_step_when_its_rollouts_can_see_it(
    omega: list[Labelled],
) -> None:
    exact = expected = variance = 0.0
    wrong = 0
    for run in omega:
        for candidate in run.result.candidates[:SOLUTIONS]:
            assert candidate.finished  # the reference's search starts at the last step
            truth = _truth(run.result, candidate.index)
            labels = [label for label in run.result.labels if label.candidate == candidate.index]
            if all(truth):
                assert all(label.hard for label in labels) and len(labels) == STEPS
                continue
            wrong += 1
            first_unsound = truth.index(False)
            found = labels[-1].step
            assert [label.hard for label in labels] == [True] * found + [False]
            assert found <= first_unsound  # an unsound prefix never reaches the gold
            seen = math.prod(1 - (1 - run.spec.p ** (STEPS - m - 1)) ** ROLLOUTS
                             for m in _ideal_probes(first_unsound) if m < first_unsound)
            exact += found == first_unsound
            expected += seen
            variance += seen * (1 - seen)
    assert wrong > 200
    _within(exact, expected, variance)


def _rollouts_by_solution(result: SearchResult) -> dict[int, int]:
    """Rollouts spent on each solution, from the trace: every rollout hangs off a step of
    the solution it continues (labelled or not)."""
    owner = {node.id: c.index for c in result.candidates[:SOLUTIONS]
             for node in result.trace.path(result.trace.nodes[c.leaf_id])}
    spent = dict.fromkeys(owner.values(), 0)
    for node in result.trace.nodes:
        if node.kind == "rollout":
            assert node.parent_id is not None
            spent[owner[node.parent_id]] += 1
    return spent


def test_omega_spends_rollouts_only_where_its_search_looks(
    omega: list[Labelled], shepherd: list[Labelled],
) -> None:
    for run in omega:
        spent = _rollouts_by_solution(run.result)
        for candidate in run.result.candidates[:SOLUTIONS]:
            right = candidate.answer == run.spec.answer
            # A binary search over STEPS - 1 open prefixes makes at most 3 probes of R.
            assert spent[candidate.index] == 0 if right else (
                0 < spent[candidate.index] <= 3 * ROLLOUTS)
    spent_omega = sum(sum(_rollouts_by_solution(r.result).values()) for r in omega)
    spent_shepherd = sum(sum(_rollouts_by_solution(r.result).values()) for r in shepherd)
    assert spent_shepherd == sum(label.rollouts for r in shepherd for label in r.result.labels)
    assert spent_omega < spent_shepherd / 2


def test_labelling_costs_are_exact_and_given_solutions_cost_nothing() -> None:
    row = make_dataset(1, LEVELS, seed=9)[0]
    engine = GroundTruthEngine()
    config = make_config(strategy="math_shepherd", n=3, rollouts=2, verifier="none")
    sampled = run_base_strategy(Problem(row["problem"], row["answer"]), config, engine,
                                NoVerifier())
    usage = sampled.trace.usage()
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        sampled.generation.prompt_tokens, sampled.generation.completion_tokens)
    texts = tuple(c.text for c in sampled.candidates[:3])
    given = run_base_strategy(Problem(row["problem"], row["answer"], solutions=texts),
                              config, engine, NoVerifier())
    # The same solutions, the same rollouts: only the solutions' own sampling is not paid.
    assert [(c.text, c.answer) for c in given.candidates] == [
        (c.text, c.answer) for c in sampled.candidates]
    assert [(label.step, label.successes) for label in given.labels] == [
        (label.step, label.successes) for label in sampled.labels]
    solutions = sum(c.completion_tokens for c in sampled.trace.nodes if c.kind == "step")
    assert given.generation.completion_tokens == sampled.generation.completion_tokens - solutions
    assert given.trace.usage().completion_tokens == given.generation.completion_tokens


def test_labelling_needs_the_gold_answer() -> None:
    row = make_dataset(1, LEVELS, seed=9)[0]
    config = make_config(strategy="omega", n=2, rollouts=2, verifier="none")
    with pytest.raises(ValueError, match="gold"):
        run_base_strategy(Problem(row["problem"]), config, GroundTruthEngine(), NoVerifier())
