"""REBASE, reward-balanced search (Wu et al. 2024): at each depth the budget still open,
n expansions less the leaves already closed, is split over the open nodes in proportion
to softmax(score / T), instead of a fixed width per kept beam; search ends with n leaves."""

import math
from collections.abc import Sequence

from ttcq.worker.engines.base import Engine
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.particles import softmax_weights
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.tree import TreeSearch
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import Verifier


def balance(total: int, scores: Sequence[float], temperature: float) -> list[int]:
    """total expansions over nodes by softmax(score / T), rounded by largest remainder so
    that they sum to total exactly (the paper rounds each share; that can miss the budget).
    Ties in the remainder go to the earlier node."""
    if not scores or total <= 0:
        return [0] * len(scores)
    weights = softmax_weights(scores, temperature)
    shares = [total * w / sum(weights) for w in weights]
    widths = [math.floor(s) for s in shares]
    order = sorted(range(len(shares)), key=lambda i: (widths[i] - shares[i], i))
    for i in order[: total - sum(widths)]:
        widths[i] += 1
    return widths


def rebase(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    """Each depth is one engine call and one verifier call; nodes given no expansion are
    pruned; finished and truncated leaves are the candidates."""
    tree = TreeSearch(SearchRun(problem, config, engine, verifier))
    frontier, widths = [tree.root()], [config.n]
    closed = 0
    while frontier:
        children = [b for kids in tree.expand(frontier, widths) for b in kids]
        scored = tree.settle(tree.score(children))
        closed += len(children) - len(scored)
        widths = balance(config.n - closed, [b.score for b in scored], config.rebase_temperature)
        tree.prune(b for b, w in zip(scored, widths, strict=True) if w == 0)
        frontier = [b for b, w in zip(scored, widths, strict=True) if w]
        widths = [w for w in widths if w]
    # Like beam search, its leaves depend on each other: the curve has the one point n.
    return tree.run.finish(tree.candidates, group_size=config.n)
