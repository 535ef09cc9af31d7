"""mcts on the ground-truth doubles: visits and Q recomputed from the stored trace, the PUCT
choice, stopping, exact tokens, reproducibility, resume, storage and the CLI flags."""

import json
import math
from dataclasses import replace
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlmodel import col, select

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from lab.ground_truth.verifier import GroundTruthVerifier
from lab.recording import RecordingEngine
from ttcq.api.cli_options import config_from, search_options
from ttcq.api.report import lines
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.jobs import claim_job
from ttcq.db.models import JobCostBase
from ttcq.db.models import TraceNode as StoredNode
from ttcq.worker.engines.base import Usage
from ttcq.worker.journal import Call, Journal, decode_calls, encode_calls
from ttcq.worker.search.config import SearchConfig, make_config
from ttcq.worker.search.mcts import MonteCarloTreeSearch, SearchNode
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.rescore import curve_group_size
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.tree import TreeSearch
from ttcq.worker.search.types import Problem, SearchResult, TraceNode
from ttcq.worker.service import SessionFactory
from ttcq.worker.stored import store_search_result

ROWS = make_dataset(10, seed=3)  # levels 1-5 twice: easy and hard problems
PROBLEMS = [Problem(row["problem"], row["answer"]) for row in ROWS]
SIMULATIONS = 12
SETTINGS: dict[str, Any] = {"strategy": "mcts", "verifier": "prm", "aggregation": "min",
                            "beam_width": 3, "mcts_simulations": SIMULATIONS, "seed": 7}
MODES = ("verifier", "rollout")
# The runs the trace checks read: verifier values; greedy with a token limit that cuts some
# paths off (so closed leaves of both kinds are revisited); rollouts, some of them cut off.
CUT = 165  # a ground-truth solution is 164 to 167 tokens long
RUNS: dict[str, dict[str, Any]] = {
    "verifier": {}, "greedy": {"c_puct": 0.0, "max_tokens": CUT},
    "rollout": {"mcts_value": "rollout", "max_tokens": CUT},
}
Searched = dict[str, list[tuple[SearchResult, RecordingEngine]]]


def _config(**overrides: Any) -> SearchConfig:
    return make_config(**{**SETTINGS, **overrides})


def _search(problem: Problem, config: SearchConfig) -> tuple[SearchResult, RecordingEngine]:
    judge = GroundTruthVerifier()
    recording = RecordingEngine(GroundTruthEngine(judge))
    return run_search(problem, config, recording, judge), recording


@pytest.fixture(scope="module")
def searched() -> Searched:
    """Each run once on every problem; the tests read the same runs."""
    return {name: [_search(p, _config(**values)) for p in PROBLEMS]
            for name, values in RUNS.items()}


def _children(result: SearchResult) -> dict[int, list[TraceNode]]:
    out: dict[int, list[TraceNode]] = {n.id: [] for n in result.trace.nodes}
    for n in result.trace.nodes:
        if n.parent_id is not None:
            out[n.parent_id].append(n)
    return out


def _leaf_value(result: SearchResult, node: TraceNode, children: dict[int, list[TraceNode]]
                ) -> float:
    """What a node was worth as a leaf, read from the trace alone: the aggregated score at
    the end of its rollout (itself without one), 0 where that end was cut off; the
    prompt's is its children's mean."""
    if node.parent_id is None:
        kids = [k for k in children[node.id] if k.visits is not None]
        return sum(_leaf_value(result, k, children) for k in kids) / len(kids)
    end = node
    while rollout := [k for k in children[end.id] if k.kind == "rollout"]:
        (end,) = rollout
    cut = {c.leaf_id for c in result.candidates if c.finish == "length"}
    assert end.agg_score is not None
    return 0.0 if end.id in cut else end.agg_score


def test_scores_on_the_trace_are_the_judges(searched: Searched) -> None:
    """Each step's score is the judge's of its path, each agg_score the min over the path:
    the values the Q checks below rebuild from are not the search's own word."""
    judge = GroundTruthVerifier()
    for run in RUNS:
        for problem, (result, _) in zip(PROBLEMS, searched[run], strict=True):
            for node in result.trace.nodes[1:]:
                path = result.trace.path(node)
                texts = [n.text for n in path]
                assert node.step_score == judge.score(problem.text, [texts]).scores[0][-1]
                assert node.agg_score == min(n.step_score or 0.0 for n in path)


@pytest.mark.parametrize("run", RUNS)
def test_visits_and_q_add_up_over_the_stored_tree(searched: Searched, run: str) -> None:
    """A node's visits are the times it was the leaf plus its children's visits; an
    expanded node was the leaf once, an open one never expanded never, a closed one
    every time; visits * Q is what those leaf visits and the children backed up."""
    for result, _ in searched[run]:
        nodes, children = result.trace.nodes, _children(result)
        assert nodes[0].visits == SIMULATIONS
        for node in nodes:
            if node.visits is None:
                assert node.kind == "rollout" and node.q_value is None
                continue
            kids = [k for k in children[node.id] if k.visits is not None]
            as_leaf = node.visits - sum(k.visits or 0 for k in kids)
            if kids:
                assert as_leaf == 1
            elif node.status == "pruned":
                assert node.visits == 0  # an open leaf is expanded on its first visit
            if not node.visits:
                assert node.q_value is None
                continue
            assert node.q_value is not None
            backed_up = as_leaf * _leaf_value(result, node, children) + sum(
                (k.q_value or 0.0) * (k.visits or 0) for k in kids)
            assert node.visits * node.q_value == pytest.approx(backed_up)


def test_the_runs_hold_what_the_checks_need(searched: Searched) -> None:
    """Guards the tests above against passing vacuously: closed leaves of both kinds
    visited (finished ones again), expanded and pruned nodes, rollouts that reached an
    answer and rollouts cut off, answers right and wrong."""
    nodes = [n for run in RUNS for r, _ in searched[run] for n in r.trace.nodes]
    assert any(n.status in ("finished", "selected") and (n.visits or 0) > 1 for n in nodes)
    assert any(n.status == "truncated" and n.visits for n in nodes)
    assert {"expanded", "pruned"} <= {n.status for n in nodes}
    rollouts = {c.finish for r, _ in searched["rollout"] for c in r.candidates
                if r.trace.nodes[c.leaf_id].kind == "rollout"}
    assert rollouts == {"stop", "length"}
    right = {r.answer == p.gold for (r, _), p in zip(searched["verifier"], PROBLEMS, strict=True)}
    assert right == {True, False}


@pytest.mark.parametrize("run", RUNS)
def test_a_candidate_finished_exactly_where_the_engine_ended_it(searched: Searched,
                                                                run: str) -> None:
    """The engine's EOS is a token with no text: a path ended by the model has one token
    more than characters; one cut off by a limit has none, and no answer."""
    for result, _ in searched[run]:
        for c in result.candidates:
            path = result.trace.path(result.trace.nodes[c.leaf_id])
            eos = sum(n.completion_tokens for n in path) == len(c.text) + 1
            assert c.finished == eos
            assert c.finished or c.canonical is None


def _puct_path(root: SearchNode, c_puct: float) -> list[SearchNode]:
    """The path PUCT takes, written out here: Q (the node's own value while unvisited)
    plus c_puct / M * sqrt(N(parent)) / (1 + N(child)), ties to the earlier child."""
    path = [root]
    while path[-1].children:
        parent, kids = path[-1], path[-1].children

        def worth(child: SearchNode, parent: SearchNode = parent,
                  m: int = len(kids)) -> float:
            q = child.value_sum / child.visits if child.visits else child.value
            return q + c_puct / m * math.sqrt(parent.visits) / (1 + child.visits)

        best = max(worth(k) for k in kids)
        path.append(next(k for k in kids if worth(k) == best))
    return path


@pytest.mark.parametrize("c_puct", [0.0, 0.5, 2.0])
def test_each_simulation_follows_puct_and_c_puct_zero_is_greedy_on_q(c_puct: float) -> None:
    judge = GroundTruthVerifier()
    config = _config(c_puct=c_puct, mcts_simulations=30)
    left_the_greedy_path = False
    for problem in PROBLEMS[::2]:
        search = MonteCarloTreeSearch(TreeSearch(SearchRun(problem, config,
                                                           GroundTruthEngine(judge), judge)))
        for _ in range(config.mcts_simulations):
            expected = _puct_path(search.root, c_puct)
            left_the_greedy_path |= expected != _puct_path(search.root, 0.0)
            before = {id(n): n.visits for n in search.nodes}
            search.simulate()
            assert [n for n in search.nodes if n.visits > before.get(id(n), 0)] == expected
    # Exploration changed a choice somewhere; greedy never does, by definition.
    assert left_the_greedy_path == (c_puct > 0)


def test_search_stops_when_no_open_leaf_is_left() -> None:
    """At max_depth 2 every second step is cut off: after the root and its two children
    are expanded nothing is open, and the simulations left are not run."""
    result, _ = _search(PROBLEMS[0], _config(beam_width=2, max_depth=2, mcts_simulations=50))
    nodes = result.trace.nodes
    assert nodes[0].visits is not None and 3 <= nodes[0].visits < 50
    assert len(nodes) == 7 and not any(n.status == "pruned" for n in nodes)
    assert {c.finish for c in result.candidates} == {"length"} and result.answer is None


def test_simulations_that_reach_no_answer_return_a_cut_off_leaf() -> None:
    result, _ = _search(PROBLEMS[0], _config(mcts_simulations=1))
    (candidate,) = result.candidates
    assert candidate.finish == "length" and result.answer is None
    assert result.trace.nodes[candidate.leaf_id].status == "selected"
    assert result.curve == {1: 0}


@pytest.mark.parametrize("run", RUNS)
def test_generation_cost_is_exact(searched: Searched, run: str) -> None:
    for result, engine in searched[run]:
        engine_total = Usage()
        for _, usage in engine.calls:
            engine_total.add(usage)
        trace = result.trace.usage()
        for field in ("prompt_tokens", "cached_tokens", "completion_tokens"):
            assert getattr(engine_total, field) == getattr(result.generation, field)
            assert getattr(trace, field) == getattr(result.generation, field)
        # One call per expansion (rollout mode: and one for its rollouts), n = M samples.
        expansions = [r for requests, _ in engine.calls for r in requests if r.n == 3]
        assert len(expansions) == sum(1 for n in result.trace.nodes
                                      if any(k.parent_id == n.id and k.kind == "step"
                                             for k in result.trace.nodes))


def test_every_sampled_step_has_its_own_seed(searched: Searched) -> None:
    for result, engine in searched["verifier"]:
        seeds = [(r.params.seed or 0) + j for requests, _ in engine.calls for r in requests
                 if r.params.temperature > 0 for j in range(r.n)]
        assert len(seeds) == len(set(seeds)) == sum(n.kind == "step" for n in result.trace.nodes)


def test_same_seed_gives_the_same_tree_and_another_seed_another() -> None:
    first, _ = _search(PROBLEMS[3], _config())
    again, _ = _search(PROBLEMS[3], _config())
    other, _ = _search(PROBLEMS[3], _config(seed=8))
    assert again.trace.nodes == first.trace.nodes and again.candidates == first.candidates
    assert [n.text for n in other.trace.nodes] != [n.text for n in first.trace.nodes]


class Interrupted(BaseException):
    """The worker died: nothing in the search may catch this."""


def _journaled(problem: Problem, config: SearchConfig, journal: Journal) -> SearchResult:
    judge = GroundTruthVerifier()
    engine = journal.engine(GroundTruthEngine(judge))
    return run_search(problem, config, engine, journal.verifier(judge))


def _checkpoint(problem: Problem, config: SearchConfig, boundary: int) -> list[Call]:
    """What a search had saved when its worker died in its boundary-th live call."""
    saved: list[Call] = []
    starts = 0

    def guard() -> None:
        nonlocal starts
        starts += 1
        if starts == boundary:
            raise Interrupted()

    dying = Journal(save=lambda calls, _first, _key: saved.extend(calls), guard=guard)
    with pytest.raises(Interrupted):
        _journaled(problem, config, dying)
    return decode_calls(encode_calls(saved))  # as stored


@pytest.mark.parametrize("mode", MODES)
def test_a_search_resumed_at_any_call_ends_as_the_uninterrupted_one(mode: str) -> None:
    config = _config(mcts_value=mode, mcts_simulations=8)
    whole = Journal()
    reference = _journaled(PROBLEMS[4], config, whole)
    for boundary in range(2, len(whole.made) + 1):
        journal = Journal(_checkpoint(PROBLEMS[4], config, boundary))
        resumed = _journaled(PROBLEMS[4], config, journal)
        assert journal.replayed == boundary - 1
        # Cache counts aside (a resumed engine has not seen the replayed prompts).
        assert ([replace(n, cached_tokens=0) for n in resumed.trace.nodes]
                == [replace(n, cached_tokens=0) for n in reference.trace.nodes])
        assert resumed.candidates == reference.candidates


def test_visits_and_q_are_stored_and_read_back(sessions: SessionFactory) -> None:
    config = _config(mcts_value="rollout")
    result, _ = _search(PROBLEMS[2], config)
    with sessions() as session:
        _, (job_id,) = create_batch(
            session=session, owner="tester", config=config.model_dump(),
            problems=[ProblemIn(line=1, problem=PROBLEMS[2].text, gold=PROBLEMS[2].gold)])
        claim = claim_job(session=session, job_id=job_id, worker="t", lease_seconds=60,
                          max_attempts=3)
        assert claim is not None
        assert store_search_result(session=session, claim=claim, gold=PROBLEMS[2].gold,
                                   result=result, cost=JobCostBase())
    with sessions() as session:
        rows = session.exec(select(StoredNode).where(StoredNode.job_id == job_id)
                            .order_by(col(StoredNode.node_id))).all()
    assert [(r.visits, r.q_value) for r in rows] == [
        (n.visits, n.q_value) for n in result.trace.nodes]
    assert rows[0].visits == SIMULATIONS and any(r.visits is None for r in rows)


def test_the_cli_flags_reach_the_config() -> None:
    @click.command()
    @search_options
    def show(recipe: Any, policy_file: Any, **flags: Any) -> None:
        click.echo(json.dumps(config_from(recipe, flags)))

    given = ["--strategy", "mcts", "--mcts-simulations", "8", "--c-puct", "0.5",
             "--mcts-value", "rollout"]
    result = CliRunner().invoke(show, given)
    assert result.exit_code == 0, result.output
    config = make_config(**json.loads(result.output))
    assert (config.mcts_simulations, config.c_puct, config.mcts_value) == (8, 0.5, "rollout")
    bad = CliRunner().invoke(show, ["--mcts-value", "coin"])
    assert bad.exit_code != 0 and "--mcts-value" in bad.output


def test_report_lines_and_rescores_read_simulations_as_the_budget() -> None:
    def key(values: dict[str, Any]) -> Any:
        return lines.key_of(lines.settings(values, ""))

    mcts = make_config(**SETTINGS).model_dump()
    assert key(mcts) == key({**mcts, "mcts_simulations": 64, "seed": 1})
    assert key(mcts) != key({**mcts, "c_puct": 2.0}) != key({**mcts, "mcts_value": "rollout"})
    # Batches of other strategies stored before the mcts fields existed keep their line.
    majority = make_config(strategy="majority").model_dump()
    before = {k: v for k, v in majority.items()
              if k not in ("mcts_simulations", "c_puct", "mcts_value")}
    assert key(before) == key(majority)
    assert curve_group_size(make_config(**SETTINGS)) == SIMULATIONS
