"""compute_optimal on the ground-truth engine: the probe's samples stay candidates, its cost
is counted exactly, settled problems stop after it, and the bin's strategy runs."""

from typing import Any

import pytest

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import TaskSpec
from lab.ground_truth.verifier import GroundTruthVerifier
from lab.recording import RecordingEngine
from ttcq.worker.engines.base import Engine, Usage
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.factory import make_verifier

WRONG = (("11", 0.5), ("12", 0.3), ("13", 0.2))
EASY = TaskSpec("easy", 1.0, 4, "42", WRONG)  # every sample is right: a unanimous probe
HARD = TaskSpec("hard", 0.6, 4, "42", WRONG)
ALWAYS_BEAM = {"probe": 4, "budget": 16, "bins": [
    {"min_agreement": 0.0, "strategy": "beam_search", "n": 16, "config": {"beam_width": 4}}]}
ALWAYS_BEST = {"probe": 4, "budget": 16, "bins": [
    {"min_agreement": 0.0, "strategy": "weighted_best_of_n", "n": 16}]}


def solve(spec: TaskSpec, **config: Any) -> SearchResult:
    """A search on a fresh engine (its prefix cache empty), judged by the self-judge."""
    engine = GroundTruthEngine(GroundTruthVerifier(2.0))
    problem = Problem(spec.problem_text(), gold=spec.answer)
    search = make_config(**{"verifier": "self_judge", "seed": 5, **config})
    return run_search(problem, search, engine, make_verifier(search.verifier, engine))


def tokens(usage: Usage) -> tuple[int, int, int]:
    return usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens


def decision(result: SearchResult) -> str:
    (node,) = [n for n in result.trace.nodes if n.kind == "decision"]
    return node.text


def test_unanimous_probe_settles_after_the_probe() -> None:
    result = solve(EASY, strategy="compute_optimal")
    probe = solve(EASY, strategy="majority", n=4, verifier="none")
    assert decision(result).startswith("bin 1 of 4: agreement 1.00 -> settled")
    assert [c.text for c in result.candidates] == [c.text for c in probe.candidates]
    assert tokens(result.generation) == tokens(probe.generation)
    assert result.generation.calls == 1 and result.verification.calls == 0
    assert result.answer == "42" and result.strategy == "compute_optimal"


def test_sampling_bin_extends_the_probe_to_the_same_result_as_the_strategy_alone() -> None:
    result = solve(HARD, strategy="compute_optimal", policy=ALWAYS_BEST)
    alone = solve(HARD, strategy="weighted_best_of_n", n=16)
    assert [c.text for c in result.candidates] == [c.text for c in alone.candidates]
    assert [c.score for c in result.candidates] == [c.score for c in alone.candidates]
    assert result.selected == alone.selected
    # Two engine calls instead of one: the same tokens, but the second finds the prompt cached.
    gen, single = result.generation, alone.generation
    assert (gen.prompt_tokens, gen.completion_tokens) == (
        single.prompt_tokens, single.completion_tokens)
    assert gen.calls == 2
    assert tokens(result.verification) == tokens(alone.verification)


def test_a_sampling_bin_within_the_probe_draws_nothing_more() -> None:
    small = {"probe": 4, "budget": 16, "bins": [
        {"min_agreement": 0.0, "strategy": "majority", "n": 2}]}
    result = solve(HARD, strategy="compute_optimal", policy=small)
    assert len(result.candidates) == 4 and result.generation.calls == 1


def test_other_strategies_cost_the_probe_plus_their_own_run() -> None:
    result = solve(HARD, strategy="compute_optimal", policy=ALWAYS_BEAM)
    probe = solve(HARD, strategy="majority", n=4, verifier="none")
    beam = solve(HARD, strategy="beam_search", n=16, beam_width=4)
    expected = tuple(a + b for a, b in zip(tokens(probe.generation), tokens(beam.generation),
                                           strict=True))
    assert tokens(result.generation) == expected
    assert tokens(result.verification) == tokens(beam.verification)
    assert tokens(result.trace.usage()) == expected
    assert decision(result).endswith("-> beam_search n=16")
    k = len(probe.candidates)
    assert [c.text for c in result.candidates[:k]] == [c.text for c in probe.candidates]
    assert [c.text for c in result.candidates[k:]] == [c.text for c in beam.candidates]
    assert result.selected == beam.selected + k and result.answer == beam.answer


def test_grafted_trace_is_one_consistent_tree() -> None:
    result = solve(HARD, strategy="compute_optimal", policy=ALWAYS_BEAM)
    nodes = result.trace.nodes
    assert [n.id for n in nodes] == list(range(len(nodes)))
    for node in nodes[1:]:
        parent = nodes[node.parent_id]  # type: ignore[index]
        assert parent.id < node.id and node.depth == parent.depth + 1
    for c in result.candidates:
        assert nodes[c.leaf_id].text in c.text
    assert nodes[result.chosen.leaf_id].status == "selected"
    assert [n.status for n in nodes].count("selected") == 1


@pytest.mark.parametrize("policy", [ALWAYS_BEAM, ALWAYS_BEST])
def test_curve_is_the_final_answer_at_the_budget(policy: dict[str, Any]) -> None:
    result = solve(HARD, strategy="compute_optimal", policy=policy)
    assert result.curve == {16: result.selected}


def test_budget_scales_with_n() -> None:
    result = solve(HARD, strategy="compute_optimal", policy=ALWAYS_BEAM, n=8)
    assert decision(result).endswith("-> beam_search n=8")


def test_default_policy_is_written_into_the_config() -> None:
    config = make_config(strategy="compute_optimal")
    assert config.policy is not None and config.n == config.policy["budget"]
    assert [b["strategy"] for b in config.policy["bins"]][-1] == "beam_search"


@pytest.mark.parametrize(("values", "field"), [
    ({"policy": {"bins": [{"min_agreement": 0.5}]}}, "policy: bins: the last bin"),
    ({"policy": {"bins": [{"min_agreement": 0.0, "strategy": "nope", "n": 4}]}},
     "policy.bins.0: strategy"),
    ({"policy": {"probe": -1, "bins": [{"min_confidence": 0.0, "n": 4}]}}, "policy.probe"),
    ({"policy": {"probe": 0, "bins": [{"min_confidence": 0.0}]}},
     "policy: probe: without a probe"),
    ({"policy": {"probe": 0, "bins": [{"min_confidence": 0.5, "n": 4},
                                      {"min_confidence": 0.0, "n": 4}]}},
     "policy: probe: without a probe"),
    ({"verifier": "none", "policy": {"difficulty": "verifier", "bins": [
        {"min_confidence": 0.0, "n": 4}]}}, "policy.difficulty: the verifier signal"),
    ({"policy": {"difficulty": "vibes", "bins": [{"min_confidence": 0.0, "n": 4}]}},
     "policy.difficulty"),
    ({"policy": {"bins": [{"min_agreement": 0.0, "n": 4, "config": {"beam_widht": 2}}]}},
     "policy.bins.0: beam_widht"),
    ({"policy": {"bins": [{"min_agreement": 0.0, "n": 4, "config": {"n": 2}}]}},
     "policy.bins.0: config may not set n"),
    ({"verifier": "none"}, "policy.bins.2: strategy weighted_best_of_n needs a verifier"),
])
def test_bad_policies_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make_config(strategy="compute_optimal", **values)


def test_policy_belongs_to_compute_optimal_only() -> None:
    with pytest.raises(ConfigError, match="only used by strategy compute_optimal"):
        make_config(strategy="majority", policy=ALWAYS_BEAM)


@pytest.mark.parametrize("difficulty", ["agreement", "verifier"])
def test_runs_on_the_real_model(engine: Engine, difficulty: str) -> None:
    """A short run on SmolLM2: a probe of 2 (judged, with the verifier signal), then beam
    search unless it was settled; the engine's own token reports, recorded, add up to the
    result's generation and verification."""
    policy = {"probe": 2, "budget": 4, "difficulty": difficulty, "bins": [
        {"min_confidence": 1.0 if difficulty == "agreement" else 0.9, "n": 0},
        {"min_confidence": 0.0, "strategy": "beam_search", "n": 4, "config": {"beam_width": 2}}]}
    config = make_config(strategy="compute_optimal", policy=policy, verifier="self_judge",
                         max_step_tokens=24, max_depth=3, max_tokens=72, seed=1)
    recorder = RecordingEngine(engine)
    problem = Problem("A pen costs $2. How much do 5 pens cost?", gold="10")
    result = run_search(problem, config, recorder, make_verifier("self_judge", recorder))
    assert len(decision(result)) > 0 and len(result.candidates) >= 2
    assert tokens(result.generation) == recorder.tokens
    assert tokens(result.verification) == tokens(recorder.judged)
    assert tokens(result.trace.usage()) == tokens(result.generation)
    assert result.curve == {4: result.selected}


BY_SCORE_BEST = {"probe": 4, "budget": 16, "difficulty": "verifier", "bins": [
    {"min_confidence": 0.99, "n": 0},
    {"min_confidence": 0.0, "strategy": "weighted_best_of_n", "n": 16}]}


def test_the_verifier_signal_is_the_mean_score_of_the_probe() -> None:
    result = solve(HARD, strategy="compute_optimal", policy=BY_SCORE_BEST)
    probe = solve(HARD, strategy="best_of_n", n=4)
    mean = sum(c.score or 0.0 for c in probe.candidates if c.finished) / 4
    assert decision(result) == (f"bin 2 of 2: verifier score {mean:.2f} -> "
                                "weighted_best_of_n n=16")


def test_a_verifier_probe_is_scored_once_and_its_scores_kept() -> None:
    """The sampling bin's result is the strategy's alone, at the same verifier cost: the
    probe's k scores are not asked for again."""
    result = solve(HARD, strategy="compute_optimal", policy=BY_SCORE_BEST)
    alone = solve(HARD, strategy="weighted_best_of_n", n=16)
    assert [c.text for c in result.candidates] == [c.text for c in alone.candidates]
    assert [c.score for c in result.candidates] == [c.score for c in alone.candidates]
    assert result.selected == alone.selected
    assert result.verification.prompt_tokens == alone.verification.prompt_tokens
    assert result.verification.calls == 2  # the probe's 4, then the other 12


def test_a_settled_verifier_probe_keeps_its_best_scored_sample() -> None:
    settle_all = {**BY_SCORE_BEST, "bins": [{"min_confidence": 0.0, "n": 0}]}
    result = solve(HARD, strategy="compute_optimal", policy=settle_all)
    best4 = solve(HARD, strategy="best_of_n", n=4)
    assert decision(result).endswith("-> settled, the probe's answer stands")
    assert result.selected == best4.selected and result.answer == best4.answer
    assert tokens(result.generation) == tokens(best4.generation)
    assert tokens(result.verification) == tokens(best4.verification)


def test_without_a_probe_the_one_strategy_runs_alone() -> None:
    no_probe = {"probe": 0, "budget": 16, "bins": [
        {"min_confidence": 0.0, "strategy": "beam_search", "n": 16, "config": {"beam_width": 4}}]}
    result = solve(HARD, strategy="compute_optimal", policy=no_probe)
    beam = solve(HARD, strategy="beam_search", n=16, beam_width=4)
    assert decision(result) == ("bin 1 of 1: no probe (the policy runs one strategy for "
                                "every problem) -> beam_search n=16")
    assert [c.text for c in result.candidates] == [c.text for c in beam.candidates]
    assert result.selected == beam.selected
    assert tokens(result.generation) == tokens(beam.generation)
    assert tokens(result.verification) == tokens(beam.verification)


def test_older_policies_with_min_agreement_still_load() -> None:
    config = make_config(strategy="compute_optimal", verifier="self_judge", policy=ALWAYS_BEAM)
    assert config.compute_policy.bins[0].min_confidence == 0.0
    assert "min_agreement" not in str(config.policy)
