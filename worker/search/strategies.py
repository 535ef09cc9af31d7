"""The base strategies: every one but compute_optimal, which chooses among these (and is
added above them, in worker.search.registry). Each has the signature (problem, config,
engine, verifier)."""

from collections.abc import Callable

from ttcq.worker.engines.base import Engine
from ttcq.worker.search.beam import beam_search, lookahead_search
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.deepconf import deepconf
from ttcq.worker.search.dvts import dvts
from ttcq.worker.search.labels import math_shepherd, omega
from ttcq.worker.search.mcts import mcts
from ttcq.worker.search.particles import particle_filtering
from ttcq.worker.search.rebase import rebase
from ttcq.worker.search.refine import self_refine
from ttcq.worker.search.sampling import best_of_n, majority, weighted_best_of_n
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import Verifier

Strategy = Callable[[Problem, SearchConfig, Engine, Verifier], SearchResult]

BASE_STRATEGIES: dict[str, Strategy] = {
    "majority": majority,
    "best_of_n": best_of_n,
    "weighted_best_of_n": weighted_best_of_n,
    "beam_search": beam_search,
    "dvts": dvts,
    "lookahead": lookahead_search,
    "self_refine": self_refine,
    "particle_filtering": particle_filtering,
    "rebase": rebase,
    "mcts": mcts,
    "math_shepherd": math_shepherd,
    "omega": omega,
    "deepconf": deepconf,
}


def run_strategy(
    strategies: dict[str, Strategy], problem: Problem, config: SearchConfig, engine: Engine,
    verifier: Verifier,
) -> SearchResult:
    """Run config's strategy, one of `strategies`."""
    try:
        strategy = strategies[config.strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {config.strategy!r}") from None
    return strategy(problem, config, engine, verifier)


def run_base_strategy(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    return run_strategy(BASE_STRATEGIES, problem, config, engine, verifier)
