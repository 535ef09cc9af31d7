"""What beam search, DVTS and lookahead share: beams over the trace, step expansion by
token ids, greedy lookahead, batched step scoring, pruning and candidates."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from ttcq.worker.engines.base import Completion, GenerationRequest
from ttcq.worker.search.answers import has_boxed_answer
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.scoring import aggregate
from ttcq.worker.search.types import Candidate, NodeKind, TraceNode

BeamState = Literal["open", "finished", "truncated"]
T = TypeVar("T")


@dataclass(frozen=True)
class Beam:
    """A partial solution: its leaf in the trace, the token ids that continue it, its
    text, its step scores and the completion tokens it has spent of its budget."""

    node: TraceNode
    token_ids: tuple[int, ...]
    text: str = ""
    group: int = 0  # the DVTS subtree; 0 in beam search
    step_scores: tuple[float, ...] = ()
    score: float = 0.0  # step_scores aggregated
    spent: int = 0
    state: BeamState = "open"


def step_state(
    completion: Completion, path_text: str, depth: int, room: int, max_depth: int
) -> BeamState:
    """Where a path stands after its newest step. A token-limit cut-off is never an
    answer, even with a box in it: the model had not chosen to stop."""
    if completion.finish_reason == "length":
        return "truncated"
    if completion.hit_eos or has_boxed_answer(path_text):
        return "finished"
    if depth >= max_depth or room <= 0:
        return "truncated"
    return "open"


def keep_top(beams: Sequence[Beam], k: int) -> tuple[list[Beam], list[Beam]]:
    """The k best beams and the others, each in their original order. A truncated beam
    can lead nowhere, so it ranks below every other; ties go to the earlier beam."""
    ranked = sorted(
        range(len(beams)),
        key=lambda i: (beams[i].state != "truncated", beams[i].score),
        reverse=True,  # stable even reversed: equal keys keep their order
    )
    kept = set(ranked[:k])
    return (
        [b for i, b in enumerate(beams) if i in kept],
        [b for i, b in enumerate(beams) if i not in kept],
    )


def spread(total: int, k: int) -> list[int]:
    """total expansions over k beams, as even as possible, earlier beams taking the rest."""
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def regroup(items: Sequence[T], sizes: Iterable[int]) -> list[list[T]]:
    """Cut a flat list back into consecutive groups of the given sizes."""
    out, start = [], 0
    for size in sizes:
        out.append(list(items[start : start + size]))
        start += size
    return out


class TreeSearch:
    """One tree search: the run it records into, the branch seeds, the candidates."""

    def __init__(self, run: SearchRun):
        self.run = run
        self.config = run.config
        self.candidates: list[Candidate] = []
        self._next_seed = 0

    def root(self, group: int = 0) -> Beam:
        return Beam(self.run.root, self.run.prompt_ids, group=group)

    def _seeds(self, n: int) -> int:
        """The first of n fresh seed offsets: no two branches of a search share one."""
        first = self._next_seed
        self._next_seed += n
        return first

    def expand(
        self,
        parents: Sequence[Beam],
        widths: Sequence[int],
        *,
        kind: NodeKind = "step",
        greedy: bool = False,
    ) -> list[list[Beam]]:
        """widths[i] next steps of parents[i], in one engine call so that it can batch
        them. Each continues its parent's token ids, never re-tokenised text."""
        c = self.config
        requests = [
            GenerationRequest(
                parent.token_ids,
                self.run.params(
                    max_tokens=min(c.max_step_tokens, c.max_tokens - parent.spent),
                    seed=self._seeds(width),
                    stop=True,
                    greedy=greedy,
                ),
                width,
            )
            for parent, width in zip(parents, widths, strict=True)
        ]
        results = self.run.generate(requests)
        return [
            [self.child(parent, completion, kind) for completion in completions]
            for parent, completions in zip(parents, results, strict=True)
        ]

    def child(self, parent: Beam, completion: Completion, kind: NodeKind) -> Beam:
        """The beam that parent becomes with completion as its next step."""
        # The completion's tokens land on this node and nowhere else: cost stays exact.
        node = self.run.trace.add(parent.node, kind, completion.text, completion)
        text = parent.text + completion.text
        spent = parent.spent + completion.completion_tokens
        c = self.config
        return replace(
            parent,
            node=node,
            token_ids=parent.token_ids + tuple(completion.token_ids),
            text=text,
            spent=spent,
            state=step_state(completion, text, node.depth, c.max_tokens - spent, c.max_depth),
        )

    def look_ahead(self, beams: Sequence[Beam]) -> list[Beam]:
        """The tip of up to k greedy steps past each open beam (a closed beam is its own
        tip). All beams advance together, one engine call per lookahead step."""
        tips = list(beams)
        for _ in range(self.config.lookahead):
            live = [i for i, tip in enumerate(tips) if tip.state == "open"]
            if not live:
                break
            steps = self.expand(
                [tips[i] for i in live], [1] * len(live), kind="lookahead", greedy=True
            )
            for i, (step,) in zip(live, steps, strict=True):
                tips[i] = step
        return tips

    def score(self, beams: Sequence[Beam]) -> list[Beam]:
        """Score each beam's newest step, through its lookahead where there is one, in
        one verifier call; returns the beams with the score appended."""
        tips = self.look_ahead(beams)
        paths = [self.run.steps_of(tip.node) for tip in tips]
        scores = [s[-1] for s in self.run.score(paths, last_only=True)]
        return [self._scored(b, t, s) for b, t, s in zip(beams, tips, scores, strict=True)]

    def _scored(self, beam: Beam, tip: Beam, score: float) -> Beam:
        step_scores = beam.step_scores + (score,)
        scored = replace(
            beam, step_scores=step_scores, score=aggregate(step_scores, self.config.aggregation)
        )
        beam.node.step_score, beam.node.agg_score = score, scored.score
        if tip.node is not beam.node:
            # The lookahead's last node holds what the verifier actually saw.
            tip.node.step_score, tip.node.agg_score = score, scored.score
            self._end_lookahead(replace(tip, step_scores=step_scores, score=scored.score))
        return scored

    def _end_lookahead(self, tip: Beam) -> None:
        # A lookahead that reached an answer was paid for: it competes as a candidate.
        if tip.state == "finished":
            self.add_candidate(tip)
        elif tip.state == "truncated":
            tip.node.status = "truncated"

    def add_candidate(self, beam: Beam) -> None:
        """A finished or truncated path becomes a candidate; its leaf's status says which."""
        if beam.state == "open":
            raise ValueError("an open beam is not a candidate")
        finished = beam.state == "finished"
        beam.node.status = "finished" if finished else "truncated"
        self.candidates.append(
            Candidate(
                index=len(self.candidates),
                group=beam.group,
                leaf_id=beam.node.id,
                text=beam.text,
                finish="stop" if finished else "length",
                step_scores=list(beam.step_scores),
            )
        )

    def settle(self, beams: Sequence[Beam]) -> list[Beam]:
        """Closed beams become candidates; the open ones are returned."""
        for beam in beams:
            if beam.state != "open":
                self.add_candidate(beam)
        return [b for b in beams if b.state == "open"]

    @staticmethod
    def prune(beams: Iterable[Beam]) -> None:
        for beam in beams:
            beam.node.status = "pruned"
