"""Token confidence as compute_optimal's difficulty signal: the probe is drawn with top-k
logprobs and costs what it cost before, its samples' confidences are stored, bins split on
their mean, and `ttcq policy fit` reads them back from a sampling batch drawn with
confidence_top_k."""

from collections.abc import Sequence
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from lab.ground_truth.verifier import GroundTruthVerifier
from lab.ground_truth_batches import run_batch
from tests.test_compute_optimal import EASY, HARD, decision, solve, tokens
from ttcq.api.cli import main
from ttcq.api.datasets import Limits, to_problems
from ttcq.db.policy_data import batch_records
from ttcq.worker.engines.base import Completion, EngineError, GenerationRequest
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.deepconf import lowest_group
from ttcq.worker.search.policy import Policy, PolicyError, parse_policy
from ttcq.worker.search.policy_fit import FitError, fit_policy
from ttcq.worker.search.policy_runs import Sample, StoredBatch, StoredJob
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem
from ttcq.worker.verifiers.factory import make_verifier

# Settle what the probe is sure of; sample on where it is not.
BY_CONFIDENCE = {"probe": 4, "budget": 16, "difficulty": "confidence", "window": 16,
                 "bins": [{"min_confidence": 1.6, "strategy": "majority", "n": 0},
                          {"min_confidence": 0.0, "strategy": "majority", "n": 16}]}


def test_the_probe_is_its_samples_mean_confidence_at_the_same_cost() -> None:
    result = solve(HARD, strategy="compute_optimal", policy=BY_CONFIDENCE)
    plain = solve(HARD, strategy="majority", n=4, verifier="none")
    probe = result.candidates[:4]
    assert [c.text for c in probe] == [c.text for c in plain.candidates]
    confidences = [c.confidence for c in probe]
    assert all(c is not None and c >= 0 for c in confidences)
    mean = sum(c for c in confidences if c is not None) / 4
    assert f"token confidence {mean:.2f}" in decision(result)
    # The rest of the n are drawn without logprobs: they hold no confidence.
    assert [c.confidence for c in result.candidates[4:]] == [None] * 12
    alone = solve(HARD, strategy="majority", n=16, verifier="none")
    assert tokens(result.generation)[::2] == tokens(alone.generation)[::2]


def test_a_confident_probe_settles() -> None:
    result = solve(EASY, strategy="compute_optimal", policy={**BY_CONFIDENCE, "bins": [
        {"min_confidence": 0.5, "strategy": "majority", "n": 0},
        {"min_confidence": 0.0, "strategy": "majority", "n": 16}]})
    assert decision(result).startswith("bin 1 of 2: token confidence")
    assert len(result.candidates) == 4 and result.answer == "42"


def test_a_sample_confidence_is_its_lowest_group() -> None:
    config = make_config(strategy="majority", n=2, verifier="none", confidence_top_k=5,
                         confidence_window=8)
    engine = GroundTruthEngine(GroundTruthVerifier(2.0))
    problem = Problem(HARD.problem_text(), gold="42")
    result = run_search(problem, config, engine, make_verifier("none", engine))
    for c in result.candidates:
        levels = engine.confidence.stream("", c.text)  # each token's, and the end's
        assert c.confidence == pytest.approx(lowest_group(levels, 8))


class NoLogprobs(GroundTruthEngine):
    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out = super().generate(requests)
        for completions in out:
            for completion in completions:
                completion.top_logprobs = None
        return out


def test_an_engine_without_top_logprobs_is_an_error() -> None:
    engine = NoLogprobs(GroundTruthVerifier(2.0))
    config = make_config(strategy="compute_optimal", policy=BY_CONFIDENCE, verifier="none")
    with pytest.raises(EngineError, match="confidence_top_k needs top-20 logprobs"):
        run_search(Problem(HARD.problem_text()), config, engine,
                   make_verifier("none", engine))


@pytest.mark.parametrize(("change", "field"), [
    ({"top_k": 0}, "policy.top_k"),
    ({"top_k": 21}, "policy.top_k"),
    ({"window": 0}, "policy.window"),
    ({"difficulty": "agreement"}, "bins.0.min_confidence: 1.6 is above 1"),
    ({"difficulty": "tokens"}, "policy.difficulty"),
])
def test_a_bad_confidence_policy_is_refused_naming_the_field(
        change: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError, match=field):
        parse_policy({**BY_CONFIDENCE, **change})


def test_confidence_thresholds_may_exceed_one() -> None:
    policy = parse_policy(BY_CONFIDENCE)
    assert policy.bin_of(3.0) == 0 and policy.bin_of(1.0) == 1


@pytest.mark.parametrize(("values", "message"), [
    ({"strategy": "beam_search", "n": 8, "verifier": "self_judge"},
     "confidence_top_k: strategy beam_search stores no sample confidences"),
    ({"strategy": "majority", "think_budget": 64},
     "confidence_top_k: not with think_budget"),
])
def test_confidence_top_k_only_where_samples_store_it(values: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(confidence_top_k=20, **values)


def confident(window: int = 16) -> StoredBatch:
    """Majority of 16 drawn with logprobs: sure samples on easy problems, unsure on hard."""
    sure = [Sample("7", True, None, 2.0)] * 4
    unsure = [Sample("9", False, None, 1.0)] * 3 + [Sample("7", True, None, 1.1)]
    jobs = {f"e{i}": StoredJob(1600, 0, {4: True, 16: True}, sure) for i in range(10)}
    jobs |= {f"h{i}": StoredJob(1600, 0, {4: False, 16: True}, unsure) for i in range(10)}
    config = {"strategy": "majority", "n": 16, "verifier": "none", "confidence_top_k": 5,
              "confidence_window": window}
    return StoredBatch("majority", config, jobs)


def test_the_fit_bins_on_the_stored_confidences_and_keeps_the_probes_logprobs() -> None:
    policy = fit_policy([confident()], probe=4, bins=2, difficulty="confidence")
    assert (policy.difficulty, policy.top_k, policy.window) == ("confidence", 5, 16)
    assert [b.min_confidence for b in policy.bins] == [2.0, 0.0]
    # The hard problems' probes mostly agree (3 of 4, on a wrong answer); they are unsure.
    assert [(b.strategy, b.n) for b in policy.bins] == [("majority", 0), ("majority", 16)]


def test_auto_weighs_confidence_probes_where_a_batch_holds_them() -> None:
    policy = fit_policy([confident()], probe=4, bins=2)
    assert "confidence of 1: " in policy.description
    assert "confidence of 4: " in policy.description


def test_a_confidence_fit_needs_a_batch_drawn_with_logprobs() -> None:
    batch = confident()
    batch.config["confidence_top_k"] = 0
    with pytest.raises(FitError, match="no sampling batch drawn with confidence_top_k"):
        fit_policy([batch], probe=4, difficulty="confidence")


def test_confidences_are_stored_and_fitted_from(sessions: Any, db_url: str,
                                                tmp_path: Any) -> None:
    rows = make_dataset(10, seed=3)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, 100)))
    batch = run_batch(sessions, problems, quality=2.0, strategy="majority", n=4,
                      verifier="none", confidence_top_k=20, confidence_window=16)
    with sessions() as session:
        [record] = batch_records(session=session, batch_ids=[batch], samples=4)
    stored = [sample for job in record.jobs.values() for sample in job.samples]
    assert len(stored) == 40 and all(s[3] is not None and s[3] >= 0 for s in stored)
    out = tmp_path / "policy.yaml"
    result = CliRunner().invoke(main, ["policy", "fit", str(batch), "--db", db_url, "-o",
                                       str(out), "--difficulty", "confidence", "--bins", "2"])
    assert result.exit_code == 0, result.output
    policy = Policy.model_validate(yaml.safe_load(out.read_text()))
    assert (policy.difficulty, policy.top_k, policy.window) == ("confidence", 20, 16)
    assert result.stdout.startswith("probe: confidence of 4\nbin 1: confidence >= ")


@pytest.mark.parametrize("thinking", [{"think_budget": 64}, {"probe_every": 32}])
def test_a_confidence_probe_with_forced_or_probed_thoughts_is_refused(
        thinking: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=f"policy.difficulty: .* {next(iter(thinking))}"):
        make_config(strategy="compute_optimal", policy=BY_CONFIDENCE, verifier="none",
                    **thinking)
