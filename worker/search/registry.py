"""The strategy registry: every strategy has the signature (problem, config, engine, verifier)."""

from collections.abc import Callable

from worker.engines.base import Engine
from worker.search.beam import beam_search, lookahead_search
from worker.search.compute_optimal import compute_optimal
from worker.search.config import SearchConfig
from worker.search.dvts import dvts
from worker.search.particles import particle_filtering
from worker.search.rebase import rebase
from worker.search.refine import self_refine
from worker.search.sampling import best_of_n, majority, weighted_best_of_n
from worker.search.types import Problem, SearchResult
from worker.verifiers.base import Verifier

Strategy = Callable[[Problem, SearchConfig, Engine, Verifier], SearchResult]

STRATEGIES: dict[str, Strategy] = {
    "majority": majority,
    "best_of_n": best_of_n,
    "weighted_best_of_n": weighted_best_of_n,
    "beam_search": beam_search,
    "dvts": dvts,
    "lookahead": lookahead_search,
    "self_refine": self_refine,
    "particle_filtering": particle_filtering,
    "rebase": rebase,
    "compute_optimal": compute_optimal,
}


def run_search(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    try:
        strategy = STRATEGIES[config.strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {config.strategy!r}") from None
    return strategy(problem, config, engine, verifier)
