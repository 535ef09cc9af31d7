"""Particle filtering (Puri et al. 2025) with optional Particle Gibbs rounds: a population
of n partial solutions that every step extends by one step each, scores, and resamples in
proportion to softmax(score / T) (score: the aggregated step scores, config.aggregation),
so that a low-scoring but sound path can survive where beam search's top-k would cut it.

A particle that finishes or is cut off leaves the population as a candidate; the open
ones are resampled among themselves, so a round makes exactly n candidates and never
more than n steps per depth. Copies of a particle are one request of n samples from its
node: each copy's step is its own trace node, paid once."""

import math
import random
from collections.abc import Sequence
from dataclasses import replace

from ttcq.worker.engines.base import Engine
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.scoring import aggregate
from ttcq.worker.search.tree import Beam, TreeSearch
from ttcq.worker.search.types import Candidate, Problem, SearchResult
from ttcq.worker.verifiers.base import Verifier


def softmax_weights(scores: Sequence[float], temperature: float) -> list[float]:
    """Unnormalised softmax(score / temperature), shifted so that nothing overflows."""
    top = max(scores)
    return [math.exp((s - top) / temperature) for s in scores]


def resample(rng: random.Random, scores: Sequence[float], k: int, temperature: float
             ) -> list[int]:
    """How many of k multinomial draws each score's particle receives."""
    picks = rng.choices(range(len(scores)), weights=softmax_weights(scores, temperature), k=k)
    return [picks.count(i) for i in range(len(scores))]


class ParticleFilter:
    """One search: the tree it grows, its own seeded generator for resampling, and every
    scored particle by its trace node (a Gibbs reference is read back from them)."""

    def __init__(self, tree: TreeSearch):
        self.tree = tree
        self.config = tree.config
        self.rng = random.Random(tree.config.seed)  # never the global generator
        self.scored: dict[int, Beam] = {}

    def run_round(self, group: int, reference: list[Beam]) -> None:
        """n particles (n - 1 beside a reference path) from the prompt to their ends; each
        closed particle becomes a candidate of this group."""
        tree = self.tree
        parents, counts = [tree.root(group)], [self.config.n - (1 if reference else 0)]
        depth = 0
        while parents:
            children = [b for kids in tree.expand(parents, counts) for b in kids]
            scored = tree.score(children)
            self.scored.update((b.node.id, b) for b in scored)
            live = tree.settle(scored)
            depth += 1
            # Conditional SMC: the reference's prefix at this depth competes in the draw
            # and its own lineage goes on without being generated again.
            anchor = reference[depth - 1] if depth <= len(reference) else None
            pool = live + ([replace(anchor, group=group)]
                           if anchor is not None and anchor.state == "open" else [])
            if not live:
                break
            copies = resample(self.rng, [b.score for b in pool], len(live),
                              self.config.pf_temperature)
            tree.prune(b for b, k in zip(live, copies, strict=False) if k == 0)
            parents = [b for b, k in zip(pool, copies, strict=True) if k]
            counts = [k for k in copies if k]

    def pick_reference(self, pool: Sequence[Candidate]) -> list[Beam]:
        """The next round's reference path, drawn by softmax(score / T) among the finished
        candidates (all of them when none finished) that are paths of scored steps."""
        paths = {c.leaf_id: self._path(c.leaf_id) for c in pool}
        usable = [c for c in pool if paths[c.leaf_id]]
        finished = [c for c in usable if c.finished] or usable
        if not finished:
            return []
        scores = [aggregate(c.step_scores, self.config.aggregation) for c in finished]
        (chosen,) = self.rng.choices(
            finished, weights=softmax_weights(scores, self.config.pf_temperature)
        )
        return paths[chosen.leaf_id]

    def _path(self, leaf_id: int) -> list[Beam]:
        """The scored particles from the first step to this leaf; [] if one is not."""
        nodes = self.tree.run.trace.path(self.tree.run.trace.nodes[leaf_id])
        beams = [self.scored.get(n.id) for n in nodes]
        return [b for b in beams if b is not None] if all(beams) else []


def particle_filtering(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    """Round r's candidates are group r, so the budget curve reads n, 2n, ... per round;
    a reference path is a candidate of the round that made it, never twice."""
    tree = TreeSearch(SearchRun(problem, config, engine, verifier))
    search = ParticleFilter(tree)
    reference: list[Beam] = []
    for round_ in range(config.pf_rounds):
        first = len(tree.candidates)
        search.run_round(round_, reference)
        previous = [c for c in tree.candidates[:first]
                    if reference and c.leaf_id == reference[-1].node.id]
        reference = search.pick_reference(tree.candidates[first:] + previous)
    return tree.run.finish(tree.candidates, group_size=config.n)
