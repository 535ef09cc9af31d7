"""Monte Carlo tree search over solution steps (PUCT, as in AlphaZero and rStar-Math).

Each node of the tree is a step with a value, its leaf estimate, fixed when it is made: its
aggregated verifier score, or with mcts_value "rollout" the aggregated score of one greedy
completion from it to an answer; 0 for a path that was cut off (never an answer). A
simulation walks from the prompt to a leaf by PUCT (choose_child). An open leaf is expanded
into M = beam_width next steps in one engine call, evaluated together (one verifier call,
or one engine call of rollouts and one verifier call); a finished or truncated leaf is
terminal and counts its value again. The leaf's value is backed up its path: each node on
it gains a visit, and Q is the mean of the values backed up through it. So a node's visits
are the times it was the leaf plus its children's visits.

Classic UCT visits every unvisited child first. Here a child's value is known as soon as it
is made, and a visit to an open child expands it (M more steps), so that rule would make
the search breadth-first: on the ground-truth task 16 simulations then seldom reach an
answer. An unvisited child's Q is its own value instead (docs/search.md has the numbers).

Every finished or truncated path is a candidate, rollouts included (they were paid for);
the answer is chosen among them by config.final_selection, as in beam search."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.scoring import aggregate
from ttcq.worker.search.steps import split_steps
from ttcq.worker.search.tree import Beam, BeamState, TreeSearch
from ttcq.worker.search.types import Problem, SearchResult, TraceNode
from ttcq.worker.verifiers.base import Verifier


@dataclass
class SearchNode:
    """A node of the search tree: the path it ends, what it is worth as a leaf (the
    verifier's or its rollout's value), its children once expanded, and its statistics."""

    beam: Beam
    value: float = 0.0
    children: list["SearchNode"] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.beam.state != "open"

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


def choose_child(children: Sequence[SearchNode], parent_visits: int, c_puct: float) -> int:
    """PUCT: the child with the largest Q + c_puct * P * sqrt(N(parent)) / (1 + N(child)),
    ties to the earlier. P = 1/M: the children are M samples of the policy, so each
    stands for an equal share of it. An unvisited child's Q is its own value (rStar-Math
    initialises Q from the PRM), which is what its first visit backs up; c_puct 0 is
    greedy on Q."""
    prior = 1.0 / len(children)
    root_n = math.sqrt(parent_visits)

    def puct(i: int) -> float:
        child = children[i]
        q = child.q if child.visits else child.value
        return q + c_puct * prior * root_n / (1 + child.visits)

    return max(range(len(children)), key=lambda i: (puct(i), -i))


def leaf_value(beam: Beam) -> float:
    """What a path is worth as it stands: its aggregated score, or 0 once it was cut off."""
    return 0.0 if beam.state == "truncated" else beam.score


class MonteCarloTreeSearch:
    """One search: the tree of SearchNodes over the run's trace, simulated one at a time."""

    def __init__(self, tree: TreeSearch):
        self.tree = tree
        self.run = tree.run
        self.config = tree.config
        self.root = SearchNode(tree.root())
        self.nodes = [self.root]
        self.open_leaves = 1  # open nodes not yet expanded: none left, nothing to search

    def simulate(self) -> None:
        """Select a leaf, expand and evaluate it if it is open, back its value up."""
        path = self.select()
        leaf = path[-1]
        value = leaf.value if leaf.terminal else self.expand(leaf)
        for node in path:
            node.visits += 1
            node.value_sum += value

    def select(self) -> list[SearchNode]:
        """The path from the root to the leaf this simulation evaluates."""
        path = [self.root]
        while path[-1].children:
            node = path[-1]
            path.append(node.children[choose_child(node.children, node.visits,
                                                   self.config.c_puct)])
        return path

    def expand(self, leaf: SearchNode) -> float:
        """M children of an open leaf in one engine call, evaluated; returns the leaf's
        own value, what this simulation backs up."""
        (beams,) = self.tree.expand([leaf.beam], [self.config.beam_width])
        if self.config.mcts_value == "rollout":
            evaluated = self.roll_out(beams)
        else:
            scored = self.tree.score(beams)
            evaluated = [(b, leaf_value(b)) for b in scored]
        for beam, _ in evaluated:
            if beam.state != "open":
                self.tree.add_candidate(beam)
        leaf.children = [SearchNode(b, value) for b, value in evaluated]
        self.nodes += leaf.children
        self.open_leaves += sum(not c.terminal for c in leaf.children) - 1
        if leaf is self.root:  # the prompt has no score: its children's mean stands in
            leaf.value = sum(c.value for c in leaf.children) / len(leaf.children)
        return leaf.value

    def roll_out(self, beams: Sequence[Beam]) -> list[tuple[Beam, float]]:
        """Each open beam continued greedily to an answer (one engine call for all), then
        every new path scored step by step in one verifier call. A beam's value is its
        rollout's score (0 if the rollout was cut off), a closed beam's its own."""
        live = [b for b in beams if b.state == "open"]
        requests = [
            GenerationRequest(b.token_ids, self.run.params(
                max_tokens=self.config.max_tokens - b.spent, seed=0, greedy=True))
            for b in live
        ]
        completions = self.run.generate(requests) if live else []
        tips = {id(b): self._rollout_tip(b, c) for b, (c,) in zip(live, completions, strict=True)}
        ends = [tips.get(id(b), b) for b in beams]
        scores = self.run.score([self.run.steps_of(end.node) for end in ends])
        out = []
        for beam, end, path_scores in zip(beams, ends, scores, strict=True):
            depth = beam.node.depth
            scored = self._with_scores(beam, beam.step_scores + (path_scores[depth - 1],))
            if end is beam:
                out.append((scored, leaf_value(scored)))
                continue
            rollout = self._with_scores(end, scored.step_scores + tuple(path_scores[depth:]))
            self.tree.add_candidate(rollout)
            out.append((scored, leaf_value(rollout)))
        return out

    def _rollout_tip(self, beam: Beam, completion: Completion) -> Beam:
        """The rollout's steps as "rollout" nodes under the beam; returns its end. Its
        prompt tokens land on the first node, its completion tokens step by step."""
        pieces = split_steps(self.run.engine, completion.token_ids, completion.text,
                             self.config.step_delimiter)
        node = beam.node
        for i, (text, n_tokens) in enumerate(pieces):
            node = self.run.trace.add(node, "rollout", text)
            node.completion_tokens = n_tokens
            if i == 0:
                node.prompt_tokens = completion.prompt_tokens
                node.cached_tokens = completion.cached_tokens
        # As in beam search, a length cut-off or a path past max_depth is not an answer.
        done = completion.finish_reason == "stop" and node.depth <= self.config.max_depth
        state: BeamState = "finished" if done else "truncated"
        return replace(beam, node=node, token_ids=beam.token_ids + tuple(completion.token_ids),
                       text=beam.text + completion.text,
                       spent=beam.spent + completion.completion_tokens, state=state)

    def _with_scores(self, beam: Beam, step_scores: tuple[float, ...]) -> Beam:
        """The beam with these step scores, written on its path's unscored nodes too."""
        aggregation = self.config.aggregation
        nodes = self.run.trace.path(beam.node)
        for i in range(len(step_scores) - 1, -1, -1):
            node = nodes[i]
            if node.step_score is not None and node is not beam.node:
                break
            node.step_score = step_scores[i]
            node.agg_score = aggregate(step_scores[: i + 1], aggregation)
        return replace(beam, step_scores=step_scores, score=aggregate(step_scores, aggregation))

    def record(self) -> None:
        """Visits and Q on the trace: every search node (0 visits and no Q where none
        reached it); rollout and lookahead nodes keep None. Open leaves never expanded
        are marked pruned: the search left them."""
        for node in self.nodes:
            trace_node: TraceNode = node.beam.node
            trace_node.visits = node.visits
            trace_node.q_value = node.q if node.visits else None
            if not node.terminal and not node.children:
                trace_node.status = "pruned"


def mcts(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    """mcts_simulations simulations, fewer if the tree has no open leaf left. Like beam
    search its candidates depend on each other: the curve has the one point, the
    simulations."""
    search = MonteCarloTreeSearch(TreeSearch(SearchRun(problem, config, engine, verifier)))
    for _ in range(config.mcts_simulations):
        if not search.open_leaves:
            break
        search.simulate()
    search.record()
    tree = search.tree
    if not tree.candidates:
        _give_up(search)
    return tree.run.finish(tree.candidates, group_size=config.mcts_simulations)


def _give_up(search: MonteCarloTreeSearch) -> None:
    """Simulations ran out before any path ended: the best-valued open leaf is returned
    as cut off (no answer), so that the result still shows how far the search got."""
    leaves = [n for n in search.nodes if not n.children]
    best = max(leaves, key=lambda n: (n.value, -n.beam.node.id))
    search.tree.add_candidate(replace(best.beam, state="truncated"))
