"""Beam search (and lookahead search, which is beam search with k > 0), as published:
N first steps; keep the best N/M open beams; expand each into M; repeat."""

from ttcq.worker.engines.base import Engine
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.tree import TreeSearch, keep_top, spread
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import Verifier


def beam_search(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    """Every iteration generates N steps in one engine call and scores them in one
    verifier call; finished and truncated beams leave the search as candidates."""
    tree = TreeSearch(SearchRun(problem, config, engine, verifier))
    keep = config.n // config.beam_width
    frontier, widths = [tree.root()], [config.n]
    while frontier:
        children = [b for kids in tree.expand(frontier, widths) for b in kids]
        frontier, pruned = keep_top(tree.settle(tree.score(children)), keep)
        tree.prune(pruned)
        # With fewer than N/M open beams left, the N expansions are shared among them
        # (search-and-learn duplicates its active beams to N the same way).
        widths = spread(config.n, len(frontier))
    # Beam search is run per budget, so its curve has the one point N.
    return tree.run.finish(tree.candidates, group_size=config.n)


# Lookahead search differs only in config.lookahead >= 1, which the config enforces.
lookahead_search = beam_search
