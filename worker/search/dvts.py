"""Diverse verifier tree search: N/M independent subtrees, each greedily keeping the best
of M new steps; the subtrees advance in lockstep so each iteration is one engine call."""

from ttcq.worker.engines.base import Engine
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.tree import Beam, TreeSearch, keep_top, regroup
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import Verifier


def dvts(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    """One candidate per subtree, its chosen path, finished or truncated; siblings that
    lost are pruned, never returned (with lookahead, a greedy continuation that reached
    an answer joins its subtree as an extra candidate). Subtree g is candidate group g,
    so the budget curve reads n = M, 2M, 4M, ... N from one run."""
    tree = TreeSearch(SearchRun(problem, config, engine, verifier))
    m = config.beam_width
    tips = [tree.root(group=g) for g in range(config.n // m)]
    while tips:
        children = tree.expand(tips, [m] * len(tips))
        scored = tree.score([b for kids in children for b in kids])
        tips = [
            tip
            for siblings in regroup(scored, [len(kids) for kids in children])
            if (tip := _keep_best(tree, siblings)) is not None
        ]
    return tree.run.finish(tree.candidates, group_size=m)


def _keep_best(tree: TreeSearch, siblings: list[Beam]) -> Beam | None:
    """The subtree's next tip, or None when its best step ended it (as a candidate)."""
    (best,), others = keep_top(siblings, 1)
    tree.prune(others)
    if best.state == "open":
        return best
    tree.add_candidate(best)
    return None
