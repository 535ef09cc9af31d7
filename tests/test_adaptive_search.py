"""Particle filtering, REBASE and early stopping on the ground-truth engine and verifier:
exact cost, reproducibility, how candidates end, the trace, and the rules themselves."""

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import LEVELS, make_dataset
from lab.ground_truth.verifier import GroundTruthVerifier
from lab.recording import RecordingEngine
from ttcq.worker.engines.base import Engine, Usage
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.particles import resample, softmax_weights
from ttcq.worker.search.rebase import balance
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.rescore import curve_group_size, rescore
from ttcq.worker.search.sampling import settled
from ttcq.worker.search.scoring import budget_points
from ttcq.worker.search.types import Candidate, Problem, SearchResult, TraceNode
from ttcq.worker.verifiers.base import VerifierOutput
from ttcq.worker.verifiers.factory import make_verifier

ROWS = make_dataset(10, seed=3)
PROBLEMS = [Problem(r["problem"], r["answer"]) for r in ROWS]
JUDGED: dict[str, Any] = {"verifier": "prm", "aggregation": "last"}
EARLY = {"early_stop": 0.75, "early_stop_round": 4, "early_stop_min": 4}
RUNS: dict[str, dict[str, Any]] = {
    "particle_filtering": {"strategy": "particle_filtering", "n": 8, **JUDGED},
    "particle_gibbs": {"strategy": "particle_filtering", "n": 8, "pf_rounds": 3, **JUDGED},
    "rebase": {"strategy": "rebase", "n": 8, **JUDGED},
    "majority_early": {"strategy": "majority", "n": 16, "verifier": "none", **EARLY},
    "weighted_early": {"strategy": "weighted_best_of_n", "n": 16, **JUDGED, **EARLY},
}


class RecordingJudge:
    """Test double around the ground-truth PRM: sums the usage of every call it answered."""

    def __init__(self, inner: GroundTruthVerifier):
        self.inner, self.name = inner, inner.name
        self.usage = Usage()

    def score(self, question: str, candidates: Sequence[Sequence[str]], *,
              last_only: bool = False) -> VerifierOutput:
        out = self.inner.score(question, candidates, last_only=last_only)
        self.usage.add(out.usage)
        return out


@dataclass
class Searched:
    result: SearchResult
    engine: RecordingEngine
    judge: RecordingJudge


def search(problem: Problem, **config: Any) -> Searched:
    judge = GroundTruthVerifier(2.0)
    engine, recording = RecordingEngine(GroundTruthEngine(judge)), RecordingJudge(judge)
    return Searched(run_search(problem, make_config(**config), engine, recording), engine,
                    recording)


def children(result: SearchResult) -> dict[int, list[TraceNode]]:
    out: dict[int, list[TraceNode]] = {n.id: [] for n in result.trace.nodes}
    for n in result.trace.nodes:
        if n.parent_id is not None:
            out[n.parent_id].append(n)
    return out


def shape(result: SearchResult) -> list[tuple[Any, ...]]:
    """Everything a rerun must repeat: the trace and the candidates."""
    nodes = [(n.parent_id, n.kind, n.text, n.status, n.step_score, n.completion_tokens)
             for n in result.trace.nodes]
    return nodes + [(c.leaf_id, c.group, c.finish, c.answer) for c in result.candidates]


# Exact cost, reproducibility and endings, for every new search
@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("problem", PROBLEMS[:5], ids=range(5))
def test_cost_is_exact(run: str, problem: Problem) -> None:
    s = search(problem, **RUNS[run])
    trace, generation = s.result.trace.usage(), s.result.generation
    assert s.engine.tokens == (generation.prompt_tokens, generation.cached_tokens,
                               generation.completion_tokens)
    assert (trace.prompt_tokens, trace.cached_tokens, trace.completion_tokens) == s.engine.tokens
    assert generation.calls == len(s.engine.calls)
    assert s.result.verification.total_tokens == s.judge.usage.total_tokens
    assert s.result.verification.calls == s.judge.usage.calls
    if RUNS[run]["verifier"] != "none":
        assert s.judge.usage.prompt_tokens > 0


@pytest.mark.parametrize("run", RUNS)
def test_a_seed_repeats_a_search_and_another_seed_does_not(run: str) -> None:
    first, again = search(PROBLEMS[1], **RUNS[run]), search(PROBLEMS[1], **RUNS[run])
    other = search(PROBLEMS[1], **RUNS[run], seed=7)
    assert shape(first.result) == shape(again.result)
    assert shape(first.result) != shape(other.result)


@pytest.mark.parametrize("run", RUNS)
def test_candidates_end_finished_or_truncated_with_honest_leaves(run: str) -> None:
    for problem in PROBLEMS[:4]:
        result = search(problem, **RUNS[run]).result
        nodes = result.trace.nodes
        for c in result.candidates:
            assert nodes[c.leaf_id].status in ("finished" if c.finished else "truncated",
                                               "selected")
        assert result.chosen.finished  # every ground-truth solution ends with a box
        steps = children(result)
        for n in nodes:
            if n.kind == "step" and run != "majority_early" and run != "weighted_early":
                # Only particles or nodes that were kept grew; dropped ones are pruned.
                grew = any(k.kind == "step" for k in steps[n.id])
                assert (n.status == "expanded") == grew
                assert n.step_score is not None


@pytest.mark.parametrize("run", RUNS)
def test_a_rescore_reads_the_same_curve_as_the_search(run: str) -> None:
    config = make_config(**RUNS[run])
    for problem in PROBLEMS[:4]:
        result = search(problem, **RUNS[run]).result
        again = rescore(result.candidates, aggregation=config.aggregation,
                        selection=config.final_selection, group_size=curve_group_size(config))
        assert (again.selected, again.curve) == (result.selected, result.curve)


@pytest.mark.parametrize("run", ["particle_filtering", "particle_gibbs", "rebase"])
def test_a_depth_limit_truncates_every_path(run: str) -> None:
    result = search(PROBLEMS[0], **RUNS[run], max_depth=2).result
    assert {c.finish for c in result.candidates} == {"length"}
    assert result.answer is None
    assert max(n.depth for n in result.trace.nodes) == 2


# Particle filtering
def test_every_particle_takes_one_step_per_engine_call() -> None:
    s = search(PROBLEMS[2], **RUNS["particle_filtering"])
    steps = [n for n in s.result.trace.nodes if n.kind == "step"]
    assert len(s.engine.calls) == LEVELS[1].steps  # every solution has L steps
    for depth, (requests, _) in enumerate(s.engine.calls, start=1):
        assert sum(r.n for r in requests) == 8  # no particle ends before step L
        # Copies of one particle are one request of n samples, never re-generated text.
        assert len({r.prompt_ids for r in requests}) == len(requests)
        assert len([n for n in steps if n.depth == depth]) == 8
    assert len(s.result.candidates) == 8


def test_resampled_copies_each_pay_only_for_their_own_step() -> None:
    s = search(PROBLEMS[3], **RUNS["particle_filtering"])
    generated = s.engine.generated.completion_tokens
    on_nodes = [n.completion_tokens for n in s.result.trace.nodes if n.kind == "step"]
    assert all(on_nodes) and sum(on_nodes) == generated
    # Copies made at resampling share their parent node: parents with several children.
    grown = [kids for kids in children(s.result).values() if len(kids) > 1]
    assert any(k[0].depth > 1 for k in grown)


def test_particle_gibbs_keeps_a_reference_path_per_round() -> None:
    s = search(PROBLEMS[4], **RUNS["particle_gibbs"])
    prompt = s.engine.calls[0][0][0].prompt_ids
    from_prompt = [r.n for requests, _ in s.engine.calls for r in requests
                   if r.prompt_ids == prompt]
    assert from_prompt == [8, 7, 7]  # rounds 2 and 3 keep one path beside the new ones
    groups = Counter(c.group for c in s.result.candidates)
    assert groups == {0: 8, 1: 7, 2: 7}  # a reference is a candidate once
    assert sorted(s.result.curve) == [8, 16, 24]
    assert len({c.leaf_id for c in s.result.candidates}) == len(s.result.candidates)


def test_particle_gibbs_resamples_copies_of_the_reference_path() -> None:
    extended = 0
    for problem in PROBLEMS:
        result = search(problem, **RUNS["particle_gibbs"]).result
        nodes = result.trace.nodes
        second_round = [n.id for n in nodes if n.parent_id == 0][8]  # after round 1's 8
        earlier = [n for n in nodes[second_round:] if n.parent_id and n.parent_id < second_round]
        paths = [{p.id for p in result.trace.path(nodes[c.leaf_id])}
                 for c in result.candidates if c.group == 0]
        # A new particle grows from an old node only where the one reference path runs.
        assert any({n.parent_id for n in earlier} <= path for path in paths)
        extended += bool(earlier)
    assert extended > 0  # guards against a vacuous pass


def test_resampling_follows_the_softmax_of_the_scores() -> None:
    rng = random.Random(0)
    scores, temperature, draws = [0.2, 0.5, 0.9], 0.5, 30_000
    counts = resample(rng, scores, draws, temperature)
    weights = softmax_weights(scores, temperature)
    expected = [draws * w / sum(weights) for w in weights]
    assert sum(counts) == draws
    assert all(abs(c - e) < 4 * e**0.5 for c, e in zip(counts, expected, strict=True))
    assert resample(random.Random(3), scores, 50, 1e-4) == [0, 0, 50]  # near greedy
    assert resample(random.Random(3), scores, 9, 0.5) == resample(random.Random(3), scores, 9,
                                                                  0.5)


def test_softmax_weights_do_not_overflow() -> None:
    assert softmax_weights([1000.0, 999.0], 0.01)[0] == 1.0


# REBASE
def test_rebase_splits_what_is_left_of_n_by_score() -> None:
    assert balance(8, [0.5, 0.5], 0.2) == [4, 4]
    assert balance(7, [0.5, 0.5, 0.5], 1.0) == [3, 2, 2]  # remainder to the earlier
    widths = balance(10, [0.9, 0.1, 0.5], 0.2)
    assert sum(widths) == 10 and widths[0] > widths[2] > widths[1]
    assert balance(10, [0.9, 0.1], 0.01) == [10, 0]
    assert balance(0, [0.3], 0.2) == [0] and balance(4, [], 0.2) == []


def test_rebase_expands_by_balance_and_prunes_nodes_given_nothing() -> None:
    s = search(PROBLEMS[5], **RUNS["rebase"])
    result, kids = s.result, children(s.result)
    assert [sum(r.n for r in requests) for requests, _ in s.engine.calls] == [8, 8, 8, 8]
    for depth in range(1, LEVELS[1].steps):
        level = [n for n in result.trace.nodes if n.kind == "step" and n.depth == depth]
        widths = balance(8, [n.agg_score or 0.0 for n in level], 0.2)
        assert [len(kids[n.id]) for n in level] == widths
        assert [n.status == "pruned" for n in level] == [w == 0 for w in widths]
    assert len(result.candidates) == 8 and result.curve == {8: result.selected}


# Early stopping
def test_early_stopping_keeps_the_samples_it_drew_and_says_why() -> None:
    stopped = 0
    for problem in PROBLEMS:
        full = search(problem, **(RUNS["majority_early"] | {"early_stop": None})).result
        early = search(problem, **RUNS["majority_early"]).result
        drawn = len(early.candidates)
        assert [c.text for c in early.candidates] == [c.text for c in full.candidates[:drawn]]
        notes = [n for n in early.trace.nodes if n.kind == "stop"]
        assert drawn % 4 == 0 and drawn >= 4
        assert sorted(early.curve) == budget_points(drawn)
        if drawn < 16:
            stopped += 1
            (note,) = notes
            votes = Counter(c.canonical for c in early.candidates if c.finished)
            top = votes.most_common(1)[0][1]
            assert top >= 0.75 * drawn
            assert f"after {drawn} of 16 samples: {top} of {drawn} agree" in note.text
            assert note.parent_id == 0 and note.completion_tokens == 0
            assert early.generation.completion_tokens < full.generation.completion_tokens
        else:
            assert notes == []
    assert 0 < stopped < len(PROBLEMS)  # guards against a vacuous pass


def test_a_stop_is_never_before_the_minimum_or_without_agreement() -> None:
    for problem in PROBLEMS[:5]:
        result = search(problem, **(RUNS["majority_early"] | {"early_stop_min": 12})).result
        assert len(result.candidates) >= 12
        strict = search(problem, **(RUNS["majority_early"] | {"early_stop": 1.0})).result
        if len(strict.candidates) < 16:
            assert len({c.canonical for c in strict.candidates}) == 1


def test_weighted_best_of_n_stops_on_the_share_of_the_score_sum() -> None:
    # Three of four samples say 7, but the verifier thinks little of them.
    found = [Candidate(i, i, i, f"so \\boxed{{{a}}}", "stop", step_scores=[s])
             for i, (a, s) in enumerate([("7", 0.1), ("7", 0.1), ("7", 0.2), ("5", 0.9)])]
    by_votes = make_config(strategy="majority", n=8, verifier="none", **EARLY)
    by_score = make_config(strategy="weighted_best_of_n", n=8, **JUDGED, **EARLY)
    assert settled(found, by_votes) == ("early stop after 4 of 8 samples: 3 of 4 agree on 7 "
                                        "(rule: share >= 0.75 after >= 4 samples)")
    assert settled(found, by_score) is None  # 7 holds 0.4 of the score sum 1.3
    found[3].step_scores = [0.05]
    assert "agree on 7" in (settled(found, by_score) or "")  # 0.4 of 0.45
    found[3].finish = "length"  # a cut-off never votes, but it counts against the share
    assert settled(found[:3] + [found[3]], by_votes) is not None
    assert settled([*found[:2], found[3], found[3]], by_votes) is None


def test_weighted_best_of_n_scores_only_the_samples_drawn() -> None:
    for problem in PROBLEMS:
        s = search(problem, **RUNS["weighted_early"])
        if len(s.result.candidates) < 16:
            break
    else:
        pytest.fail("no search stopped early: pick other problems")
    assert all(c.step_scores for c in s.result.candidates)
    rounds = len(s.result.candidates) // 4
    assert len(s.engine.calls) == rounds and s.judge.usage.calls == rounds


# Config
@pytest.mark.parametrize(("values", "field"), [
    ({"strategy": "beam_search", "early_stop": 0.8}, "early_stop"),
    ({"strategy": "majority", "n": 4, "early_stop": 0.8, "early_stop_min": 8}, "early_stop_min"),
    ({"strategy": "majority", "early_stop": 1.5}, "early_stop"),
    ({"strategy": "particle_filtering", "pf_temperature": 0}, "pf_temperature"),
    ({"strategy": "particle_filtering", "pf_rounds": 0}, "pf_rounds"),
    ({"strategy": "particle_filtering", "pf_rounds": 2, "n": 1}, "pf_rounds"),
    ({"strategy": "rebase", "rebase_temperature": -1}, "rebase_temperature"),
    ({"strategy": "majority", "early_stop": 0.8, "early_stop_round": 0}, "early_stop_round"),
])
def test_bad_settings_name_their_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make_config(**values)


def test_the_new_strategies_need_a_verifier() -> None:
    for strategy in ("particle_filtering", "rebase"):
        with pytest.raises(ConfigError, match="needs a verifier"):
            make_config(strategy=strategy, verifier="none")


# On the real model
def test_early_stopping_samples_in_rounds_on_the_real_model(engine: Engine) -> None:
    recording = RecordingEngine(engine)
    config = make_config(strategy="majority", n=4, max_tokens=16, verifier="none", seed=3,
                         early_stop=0.5, early_stop_round=2, early_stop_min=2)
    result = run_search(Problem("A pen costs $2. How much do 5 pens cost?"), config, recording,
                        make_verifier("none", recording))
    assert [[r.n for r in requests] for requests, _ in recording.calls][0] == [2]
    assert sum(r.n for requests, _ in recording.calls for r in requests) == len(
        result.candidates)
    usage = result.trace.usage()
    assert recording.tokens == (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
    stops = [n for n in result.trace.nodes if n.kind == "stop"]
    assert len(stops) == (len(result.candidates) < 4)
    assert [c.index for c in result.candidates] == list(range(len(result.candidates)))
