"""beam_search, dvts, lookahead, particle_filtering and rebase on the real SmolLM2 model:
how candidates end, the trace tree, exact generation cost, lookahead accounting and
reproducibility."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from lab.recording import RecordingEngine
from ttcq.worker.engines.base import (
    Engine,
    Usage,
)
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem, SearchResult, TraceNode
from ttcq.worker.verifiers.base import Verifier, VerifierOutput
from ttcq.worker.verifiers.factory import make_verifier

PROBLEM = Problem("A pen costs $2. How much do 5 pens cost?", gold="10")
# Short steps, so that three of them fit the small per-step limit that keeps this fast.
SYSTEM = (
    "Solve the problem in short steps of one sentence each, separated by a blank line. "
    "Write the final answer as \\boxed{answer}."
)
SETTINGS: dict[str, Any] = {
    "n": 4, "beam_width": 2, "max_step_tokens": 24, "max_depth": 3, "max_tokens": 72,
    "verifier": "self_judge", "system_prompt": SYSTEM, "seed": 1,
}
STRATEGIES: dict[str, dict[str, Any]] = {
    "beam_search": {}, "dvts": {}, "lookahead": {"lookahead": 1},
    "particle_filtering": {"pf_rounds": 2}, "rebase": {},
}


class RecordingVerifier:
    """Test double around self-judge: keeps every path it scored and the score it gave."""

    def __init__(self, inner: Verifier):
        self.inner = inner
        self.name = inner.name
        self.scored: list[tuple[tuple[str, ...], float]] = []

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        out = self.inner.score(question, candidates, last_only=last_only)
        self.scored += [(tuple(c), s[-1]) for c, s in zip(candidates, out.scores, strict=True)]
        return out


@dataclass
class Searched:
    result: SearchResult
    engine: RecordingEngine
    verifier: RecordingVerifier


def _search(engine: Engine, strategy: str) -> Searched:
    recording = RecordingEngine(engine)
    verifier = RecordingVerifier(make_verifier("self_judge", engine))
    config = make_config(strategy=strategy, **SETTINGS, **STRATEGIES[strategy])
    return Searched(run_search(PROBLEM, config, recording, verifier), recording, verifier)


@pytest.fixture(scope="module")
def searched(engine: Engine) -> dict[str, Searched]:
    """Each strategy run once on the real model; the tests read the same runs."""
    return {strategy: _search(engine, strategy) for strategy in STRATEGIES}


def _children(result: SearchResult) -> dict[int, list[TraceNode]]:
    out: dict[int, list[TraceNode]] = {n.id: [] for n in result.trace.nodes}
    for n in result.trace.nodes:
        if n.parent_id is not None:
            out[n.parent_id].append(n)
    return out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_candidate_is_finished_or_truncated(
    searched: dict[str, Searched], strategy: str
) -> None:
    result = searched[strategy].result
    for c in result.candidates:
        leaf = result.trace.nodes[c.leaf_id]
        expected = "finished" if c.finish == "stop" else "truncated"
        assert leaf.status in (expected, "selected")
        if c.finish == "length":
            assert c.canonical is None  # a cut-off answer never votes
    if any(c.finished for c in result.candidates):
        assert result.chosen.finished
    else:
        assert result.answer is None


def test_the_runs_hold_what_the_checks_need(searched: dict[str, Searched]) -> None:
    """Guards the other tests against passing vacuously (for instance after an engine
    change): some run mixes both endings, and beam search pruned an open beam."""
    endings = [{c.finish for c in s.result.candidates} for s in searched.values()]
    assert {"stop", "length"} in endings, "pick another seed"
    pruned = [n for s in ("beam_search", "lookahead") for n in searched[s].result.trace.nodes
              if n.status == "pruned"]
    assert pruned, "pick another seed"


@pytest.mark.parametrize("strategy", ["beam_search", "lookahead"])
def test_beam_search_keeps_the_best_open_beams(
    searched: dict[str, Searched], strategy: str
) -> None:
    steps = [n for n in searched[strategy].result.trace.nodes if n.kind == "step"]
    for depth in range(1, 4):
        # Open steps were either kept (and expanded) or pruned; the others ended.
        kept = [n.agg_score or 0.0 for n in steps if n.depth == depth and n.status == "expanded"]
        pruned = [n.agg_score or 0.0 for n in steps if n.depth == depth and n.status == "pruned"]
        assert len(kept) == min(2, len(kept) + len(pruned))
        assert not pruned or min(kept) >= max(pruned)


def test_dvts_returns_the_chosen_path_of_each_subtree(searched: dict[str, Searched]) -> None:
    result = searched["dvts"].result
    nodes, children = result.trace.nodes, _children(result)
    assert sorted(c.group for c in result.candidates) == [0, 1]  # n / beam_width subtrees
    # The subtrees share the prompt: 2 first steps each, one of them kept per subtree.
    assert [n.status == "pruned" for n in children[0]].count(False) == 2
    paths = [result.trace.path(nodes[c.leaf_id]) for c in result.candidates]
    assert paths[0][0] is not paths[1][0]
    for path in paths:
        assert all(n.status != "pruned" for n in path)
        for parent, node in zip(path, path[1:], strict=False):
            siblings = children[parent.id]
            assert len(siblings) == 2 and node in siblings
            assert all(s.status == "pruned" for s in siblings if s is not node)


def test_dvts_budget_curve_reads_every_multiple_of_m(searched: dict[str, Searched]) -> None:
    result = searched["dvts"].result
    assert sorted(result.curve) == [2, 4]
    assert result.candidates[result.curve[2]].group == 0
    assert result.curve[4] == result.selected


def test_lookahead_text_is_counted_and_its_score_used(searched: dict[str, Searched]) -> None:
    run = searched["lookahead"]
    nodes, children = run.result.trace.nodes, _children(run.result)
    ahead = [n for n in nodes if n.kind == "lookahead"]
    assert ahead and all(n.completion_tokens > 0 and n.prompt_tokens > 0 for n in ahead)
    tips = [n for n in ahead if not any(k.kind == "lookahead" for k in children[n.id])]
    for tip in tips:
        step = nodes[tip.parent_id or 0]
        while step.kind == "lookahead":
            step = nodes[step.parent_id or 0]
        path = tuple(n.text for n in run.result.trace.path(tip))
        assert step.step_score == tip.step_score
        assert (path, tip.step_score) in run.verifier.scored


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_trace_is_a_tree_with_honest_statuses(
    searched: dict[str, Searched], strategy: str
) -> None:
    result = searched[strategy].result
    nodes, children = result.trace.nodes, _children(result)
    assert nodes[0].kind == "prompt" and nodes[0].parent_id is None
    for i, n in enumerate(nodes[1:], start=1):
        assert n.id == i and n.parent_id is not None and n.parent_id < i
        assert n.depth == nodes[n.parent_id].depth + 1 <= 3  # max_depth, lookahead too
        steps = [k for k in children[n.id] if k.kind == "step"]
        if n.kind == "step":
            assert n.step_score is not None and n.agg_score is not None
            assert (n.status == "expanded") == bool(steps)  # only kept steps grow
    leaf = nodes[result.chosen.leaf_id]
    assert leaf.status == "selected"
    assert result.trace.path(leaf)[0].parent_id == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_generation_cost_is_exact(searched: dict[str, Searched], strategy: str) -> None:
    run = searched[strategy]
    engine_total = Usage()
    for _, usage in run.engine.calls:
        engine_total.add(usage)
    generation, trace = run.result.generation, run.result.trace.usage()
    for field in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        assert getattr(engine_total, field) == getattr(generation, field)
        assert getattr(trace, field) == getattr(generation, field)
    assert generation.completion_tokens > 0
    assert generation.calls == len(run.engine.calls)


def test_an_iteration_is_one_engine_call_per_kind_of_step(
    searched: dict[str, Searched],
) -> None:
    beam, dvts = searched["beam_search"].engine.calls, searched["dvts"].engine.calls
    assert [r.n for r in beam[0][0]] == [4]
    for requests, _ in beam[1:]:
        assert len(requests) <= 2 and sum(r.n for r in requests) == 4
    for requests, _ in dvts:
        assert len(requests) <= 2 and {r.n for r in requests} == {2}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_sampled_branch_has_its_own_seed(
    searched: dict[str, Searched], strategy: str
) -> None:
    seeds = [
        (r.params.seed or 0) + j
        for requests, _ in searched[strategy].engine.calls
        for r in requests
        if r.params.temperature > 0
        for j in range(r.n)
    ]
    assert len(seeds) == len(set(seeds)) > 0


@pytest.mark.parametrize("strategy", ["dvts", "lookahead"])
def test_same_seed_gives_the_same_trace(
    engine: Engine, searched: dict[str, Searched], strategy: str
) -> None:
    first, again = searched[strategy].result, _search(engine, strategy).result
    assert again.trace.nodes == first.trace.nodes
    assert again.candidates == first.candidates


def test_particles_and_rebase_spend_what_is_left_of_n_per_step(
    searched: dict[str, Searched],
) -> None:
    for strategy in ("particle_filtering", "rebase"):
        run = searched[strategy]
        for requests, _ in run.engine.calls:
            # Copies of a particle are one request of n samples, never one request each.
            assert len({r.prompt_ids for r in requests}) == len(requests)
    steps = [n for n in searched["rebase"].result.trace.nodes if n.kind == "step"]
    for depth, (requests, _) in enumerate(searched["rebase"].engine.calls, start=1):
        closed = [n for n in steps if n.depth < depth
                  and n.status in ("finished", "truncated", "selected")]
        assert sum(r.n for r in requests) == 4 - len(closed)
    rounds = [c.group for c in searched["particle_filtering"].result.candidates]
    assert sorted(set(rounds)) == [0, 1] and rounds.count(0) == 4
    assert sorted(searched["particle_filtering"].result.curve) == [4, 8]
