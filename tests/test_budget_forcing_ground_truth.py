"""s1 budget forcing on the ground-truth task's thought model: the real search (forcing.py
through run_base_strategy) against an independent numpy simulation
(lab.ground_truth.simulate_forcing) within 3.5 standard deviations, in accuracy and in
thinking, forced and answer tokens, at several budgets, with a minimum and under a vote;
the accuracy-vs-budget curve rises and then flattens; and each check tells a reference
one budget step off from the right one."""

import math
from statistics import mean, pvariance

import numpy as np
import pytest

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.simulate_forcing import CUE, Forcing, Run, majority
from lab.ground_truth.task import make_dataset, specs_of
from lab.ground_truth.thought import Thinking
from tests.utils.agreement import assert_mean_agrees
from ttcq.worker.search.config import make_config
from ttcq.worker.search.strategies import run_base_strategy
from ttcq.worker.search.thinking import ANSWER_CUE
from ttcq.worker.search.types import Problem
from ttcq.worker.verifiers.base import NoVerifier

MODEL = Thinking(mean_attempts=24.0)  # a natural thought: 680 tokens on average
PROBLEMS, SIMULATED = 300, 3000
MAX_TOKENS = 4096
FIELDS = ("correct", "thinking", "forced", "answering")


def _searched(forcing: Forcing, n: int = 1, problems: int = PROBLEMS) -> list[Run]:
    """Majority of n on the ground-truth engine, one search per problem."""
    engine = GroundTruthEngine(thinking=MODEL)
    config = make_config(strategy="majority", verifier="none", n=n, max_tokens=MAX_TOKENS,
                         think_budget=forcing.budget, think_min=forcing.minimum)
    out = []
    for row in make_dataset(problems, seed=21):
        result = run_base_strategy(Problem(row["problem"], row["answer"]), config, engine,
                                   NoVerifier())
        forced = sum(len(node.text) for node in result.trace.nodes if node.kind == "forced")
        thinking = result.thinking_tokens
        out.append(Run(result.answer == row["answer"], thinking, forced,
                       result.generation.completion_tokens - thinking))
    return out


def _simulated(forcing: Forcing, n: int = 1) -> list[Run]:
    rng = np.random.default_rng(5)
    return [majority(spec, MODEL, forcing, n, rng)
            for spec in specs_of(make_dataset(SIMULATED, seed=22))]


def _agree(measured: list[Run], reference: list[Run]) -> None:
    """Every field's mean within 3.5 SD of the simulation's."""
    for name in FIELDS:
        assert_mean_agrees([getattr(r, name) for r in measured],
                           [getattr(r, name) for r in reference], name)


BUDGETS = (64, 256, 1024)


@pytest.fixture(scope="module")
def searched() -> dict[int, list[Run]]:
    return {budget: _searched(Forcing(budget, max_tokens=MAX_TOKENS)) for budget in BUDGETS}


@pytest.mark.parametrize("budget", BUDGETS)
def test_forced_thoughts_match_the_simulation(searched: dict[int, list[Run]],
                                              budget: int) -> None:
    _agree(searched[budget], _simulated(Forcing(budget, max_tokens=MAX_TOKENS)))


@pytest.mark.parametrize("budget", BUDGETS)
def test_the_check_tells_the_next_budget_step_apart(searched: dict[int, list[Run]],
                                                    budget: int) -> None:
    """The same check against a reference one budget step off (half or twice the budget)
    fails: the agreement above is no accident of wide error bars."""
    for off in (budget // 2, budget * 2):
        with pytest.raises(AssertionError):
            _agree(searched[budget], _simulated(Forcing(off, max_tokens=MAX_TOKENS)))


def test_accuracy_rises_with_the_budget_then_flattens(searched: dict[int, list[Run]]) -> None:
    """Measured: 0.49 at T = 64, 0.74 at 256, 0.82 at 1024; the simulation's plateau (no
    budget) is 0.83, which T = 2048 reaches within a point."""
    accuracy = [mean(r.correct for r in searched[budget]) for budget in BUDGETS]
    assert accuracy[0] + 0.1 < accuracy[1] < accuracy[2]
    plateau = mean(r.correct for r in _simulated(Forcing(None, max_tokens=MAX_TOKENS)))
    late = mean(r.correct for r in _simulated(Forcing(2048, max_tokens=MAX_TOKENS)))
    assert abs(late - plateau) < 0.02 and late - accuracy[0] > 0.25


def test_a_minimum_with_wait_matches_the_simulation() -> None:
    forcing = Forcing(1024, minimum=512, max_tokens=MAX_TOKENS)
    measured = _searched(forcing, problems=200)
    _agree(measured, _simulated(forcing))
    with pytest.raises(AssertionError):  # a minimum one step off: 256
        _agree(measured, _simulated(Forcing(1024, minimum=256, max_tokens=MAX_TOKENS)))
    # Thoughts below 512 tokens were extended: more accurate than without the minimum.
    plain = _simulated(Forcing(1024, max_tokens=MAX_TOKENS))
    assert mean(r.correct for r in measured) > mean(r.correct for r in plain)


def test_majority_of_forced_thoughts_matches_the_simulation() -> None:
    forcing = Forcing(128, max_tokens=MAX_TOKENS)
    measured = _searched(forcing, n=5, problems=150)
    _agree(measured, _simulated(forcing, n=5))
    with pytest.raises(AssertionError):
        _agree(measured, _simulated(Forcing(256, max_tokens=MAX_TOKENS), n=5))


def test_a_minimum_without_a_budget_leaves_a_cut_thought_unanswered() -> None:
    forcing = Forcing(None, minimum=512, max_tokens=600)
    engine = GroundTruthEngine(thinking=MODEL)
    config = make_config(strategy="majority", verifier="none", n=1, max_tokens=600,
                         think_min=512)
    measured = []
    for row in make_dataset(200, seed=23):
        result = run_base_strategy(Problem(row["problem"], row["answer"]), config, engine,
                                   NoVerifier())
        measured.append(result.answer == row["answer"])
    reference = [r.correct for r in _simulated(forcing)]
    sd = math.sqrt(pvariance(measured) / 200 + pvariance(reference) / len(reference))
    assert abs(mean(measured) - mean(reference)) <= 3.5 * sd


def test_the_simulations_cue_is_the_searchs() -> None:
    assert CUE == len("</think>" + ANSWER_CUE)


def test_a_forced_thought_is_the_unforced_one_cut_at_its_budget() -> None:
    """The engine's thought does not depend on the call's token limit: forcing at T cuts
    the very thought the sample would have written, then asks for its answer."""
    engine = GroundTruthEngine(thinking=MODEL)
    for row in make_dataset(20, seed=24):
        problem = Problem(row["problem"], row["answer"])
        texts = [run_base_strategy(problem, make_config(
            strategy="majority", verifier="none", n=1, max_tokens=MAX_TOKENS, **budget),
            engine, NoVerifier()).candidates[0].text for budget in ({}, {"think_budget": 256})]
        whole, forced = texts
        cut = forced.find("</think>" + ANSWER_CUE)
        assert whole.startswith(forced[:cut] if cut >= 0 else forced.split("</think>")[0])
