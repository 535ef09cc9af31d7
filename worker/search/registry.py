"""The strategy registry: the base strategies and compute_optimal, which runs one of them
per problem; every strategy has the signature (problem, config, engine, verifier)."""

from ttcq.worker.engines.base import Engine
from ttcq.worker.search.compute_optimal import compute_optimal
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.strategies import BASE_STRATEGIES, Strategy, run_strategy
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import Verifier

STRATEGIES: dict[str, Strategy] = {**BASE_STRATEGIES, "compute_optimal": compute_optimal}


def run_search(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    return run_strategy(STRATEGIES, problem, config, engine, verifier)
