"""Search state and results: the trace tree, final candidates and what a search returns."""

from dataclasses import dataclass, field
from typing import Literal

from ttcq.worker.engines.base import Completion, FinishReason, Usage

NodeStatus = Literal["expanded", "pruned", "finished", "truncated", "selected"]
# "stop": a note where a search stopped early and why; "decision": compute_optimal's
# choice of strategy for the problem. Neither holds tokens.
# How a path's step scores become one score (config.aggregation).
Aggregation = Literal["last", "min", "prod", "mean"]
# "rollout": a continuation from a step to an answer (a labeller's, or mcts's value).
# "forced": text ttcq appended to a thought (budget forcing); its tokens are counted as
# prompt tokens of the call that continues from it, not here.
# "probe": the answer asked for mid-thought (answer probing), holding that call's tokens.
NodeKind = Literal[
    "prompt", "step", "lookahead", "critique", "revision", "stop", "decision", "rollout",
    "forced", "probe",
]


@dataclass(frozen=True)
class Problem:
    text: str
    gold: str | None = None
    custom_id: str | None = None
    # Solutions written elsewhere (a stored batch's candidates) for a labeller to label.
    solutions: tuple[str, ...] = ()


@dataclass
class TraceNode:
    id: int
    parent_id: int | None
    depth: int
    kind: NodeKind
    text: str
    status: NodeStatus = "expanded"
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    step_score: float | None = None
    agg_score: float | None = None
    # mcts: times the node was on a simulation's path, and the mean value backed up.
    visits: int | None = None
    q_value: float | None = None


@dataclass
class Trace:
    """The search tree. Node 0 is the prompt; tokens of every engine sequence land on
    exactly one node, so node token sums equal the generation usage."""

    nodes: list[TraceNode] = field(default_factory=list)

    def add(
        self,
        parent: TraceNode | None,
        kind: NodeKind,
        text: str,
        completion: Completion | None = None,
        status: NodeStatus = "expanded",
    ) -> TraceNode:
        node = TraceNode(
            id=len(self.nodes),
            parent_id=parent.id if parent else None,
            depth=parent.depth + 1 if parent else 0,
            kind=kind,
            text=text,
            status=status,
        )
        if completion is not None:
            node.prompt_tokens = completion.prompt_tokens
            node.cached_tokens = completion.cached_tokens
            node.completion_tokens = completion.completion_tokens
        self.nodes.append(node)
        return node

    def path(self, node: TraceNode) -> list[TraceNode]:
        """Nodes from the root's child down to node."""
        out = []
        current: TraceNode | None = node
        while current is not None and current.parent_id is not None:
            out.append(current)
            current = self.nodes[current.parent_id]
        return out[::-1]

    def usage(self) -> Usage:
        usage = Usage()
        for n in self.nodes:
            usage.prompt_tokens += n.prompt_tokens
            usage.cached_tokens += n.cached_tokens
            usage.completion_tokens += n.completion_tokens
        return usage


@dataclass
class Candidate:
    index: int  # order of completion, for reproducible tie-breaks
    group: int  # sample, subtree or revision number: budget curves count these
    leaf_id: int  # the trace node that ends this candidate
    text: str
    finish: FinishReason  # "length": cut off by a token or depth limit, never an answer
    answer: str | None = None
    canonical: str | None = None
    extraction: str | None = None
    step_scores: list[float] = field(default_factory=list)
    score: float | None = None
    selected: bool = False
    # Token confidence (lowest group) of a sample drawn with top-k logprobs; else None.
    confidence: float | None = None

    @property
    def finished(self) -> bool:
        return self.finish == "stop"


@dataclass(frozen=True)
class StepLabel:
    """A step of a solution labelled by rollouts from its prefix (the prefix ends with the
    step): `successes` of `rollouts` reached the gold answer. hard = some did; soft = the
    share (None where the label was inferred without rollouts of its own)."""

    candidate: int  # the solution's candidate index
    step: int  # 0-based step of the solution
    node_id: int  # the step's trace node
    rollouts: int
    successes: int
    hard: bool
    soft: float | None
    method: str


@dataclass
class SearchResult:
    strategy: str
    candidates: list[Candidate]
    trace: Trace
    selected: int
    generation: Usage
    verification: Usage
    # Budget n -> index of the candidate chosen with only the first n of the budget.
    curve: dict[int, int] = field(default_factory=dict)
    labels: list[StepLabel] = field(default_factory=list)
    # Of generation.completion_tokens, those inside thoughts (0 where none is counted).
    thinking_tokens: int = 0

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.selected]

    @property
    def answer(self) -> str | None:
        chosen = self.chosen
        return chosen.answer if chosen.finished else None
