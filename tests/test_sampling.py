"""majority, best_of_n and weighted_best_of_n through run_search on the real model."""

import json
from pathlib import Path

import pytest

from lab.recording import RecordingEngine
from ttcq.worker.engines.base import Engine, Usage
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.scoring import select
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.factory import make_verifier

EXAMPLE = json.loads(
    (Path(__file__).parents[1] / "examples" / "gsm8k_sample.jsonl").read_text().splitlines()[0]
)
PROBLEM = Problem(EXAMPLE["question"], gold="18")
RUNS = ["majority_run", "judged_run", "weighted_run"]


def search(engine: Engine, strategy: str, verifier: str) -> tuple[SearchResult, RecordingEngine]:
    recorder = RecordingEngine(engine)
    config = make_config(strategy=strategy, n=4, max_tokens=16, verifier=verifier, seed=3)
    result = run_search(PROBLEM, config, recorder, make_verifier(verifier, recorder))
    return result, recorder


@pytest.fixture(scope="module")
def majority_run(engine: Engine) -> tuple[SearchResult, RecordingEngine]:
    return search(engine, "majority", "none")


@pytest.fixture(scope="module")
def judged_run(engine: Engine) -> tuple[SearchResult, RecordingEngine]:
    return search(engine, "best_of_n", "self_judge")


@pytest.fixture(scope="module")
def weighted_run(engine: Engine) -> tuple[SearchResult, RecordingEngine]:
    return search(engine, "weighted_best_of_n", "checker")


def tokens(usage: Usage) -> tuple[int, int, int]:
    return usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens


@pytest.mark.parametrize("run", RUNS)
def test_every_candidate_is_finished_or_truncated(run: str, request: pytest.FixtureRequest) -> None:
    result, _ = request.getfixturevalue(run)
    assert len(result.candidates) == 4
    for c in result.candidates:
        leaf = result.trace.nodes[c.leaf_id]
        assert c.finish in ("stop", "length")
        expected = "finished" if c.finished else "truncated"
        assert leaf.status == ("selected" if c.selected else expected)
        if not c.finished:
            assert c.canonical is None  # a cut-off never votes


@pytest.mark.parametrize("run", RUNS)
def test_generation_cost_is_exact(run: str, request: pytest.FixtureRequest) -> None:
    result, recorder = request.getfixturevalue(run)
    assert tokens(result.generation) == tokens(recorder.generated)
    assert tokens(result.trace.usage()) == tokens(recorder.generated)
    assert result.generation.calls == recorder.generated.calls == 1
    assert result.generation.completion_tokens == sum(
        n.completion_tokens for n in result.trace.nodes
    )


def test_self_judge_tokens_are_counted(judged_run: tuple[SearchResult, RecordingEngine]) -> None:
    result, recorder = judged_run
    assert result.verification.prompt_tokens > 0
    assert tokens(result.verification) == tokens(recorder.judged)
    assert result.verification.calls == 1


def test_checker_costs_calls_not_tokens(weighted_run: tuple[SearchResult, RecordingEngine]) -> None:
    result, recorder = weighted_run
    assert tokens(result.verification) == (0, 0, 0)
    assert result.verification.calls == 1 and recorder.judged.calls == 0


@pytest.mark.parametrize("run", ["judged_run", "weighted_run"])
def test_every_step_is_scored(run: str, request: pytest.FixtureRequest) -> None:
    result, _ = request.getfixturevalue(run)
    for c in result.candidates:
        path = result.trace.path(result.trace.nodes[c.leaf_id])
        assert len(c.step_scores) == len(path)
        assert [n.step_score for n in path] == c.step_scores
        assert all(0.0 <= s <= 1.0 for s in c.step_scores)
        assert c.score is not None


@pytest.mark.parametrize(
    ("run", "method"),
    [("majority_run", "majority"), ("judged_run", "naive"), ("weighted_run", "weighted")],
)
def test_default_selection(run: str, method: str, request: pytest.FixtureRequest) -> None:
    result, _ = request.getfixturevalue(run)
    assert result.selected == select(result.candidates, method)  # type: ignore[arg-type]
    assert [c.selected for c in result.candidates].count(True) == 1


@pytest.mark.parametrize("run", RUNS)
def test_budget_curve_doubles_up_to_n(run: str, request: pytest.FixtureRequest) -> None:
    result, _ = request.getfixturevalue(run)
    assert sorted(result.curve) == [1, 2, 4]
    assert result.curve[4] == result.selected
    assert result.curve[1] == 0


def test_same_seed_same_trace(
    engine: Engine, majority_run: tuple[SearchResult, RecordingEngine]
) -> None:
    again, _ = search(engine, "majority", "none")
    first, _ = majority_run
    shape = [(n.parent_id, n.kind, n.text, n.completion_tokens) for n in first.trace.nodes]
    assert [(n.parent_id, n.kind, n.text, n.completion_tokens) for n in again.trace.nodes] == shape
