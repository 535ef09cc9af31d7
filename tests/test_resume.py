"""Resume, not restart: every strategy, interrupted at any step boundary and resumed from
its journal, ends with exactly the uninterrupted result on an engine that repeats itself
for a seed (the ground-truth engine), and makes no engine call for what it replays; on the
llama.cpp engine, what holds there."""

from typing import Any

import pytest

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from lab.recording import RecordingEngine
from ttcq.worker.engines.base import Completion, GenerationRequest
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.journal import Call, Journal, decode_calls, encode_calls, generate_key
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import STRATEGIES, run_search
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.factory import make_verifier

JUDGED = {"verifier": "self_judge"}
CONFIGS: dict[str, dict[str, Any]] = {
    "majority": {"n": 8, "verifier": "none", "early_stop": 0.9, "early_stop_round": 2},
    "best_of_n": {"n": 6, **JUDGED},
    "weighted_best_of_n": {"n": 6, **JUDGED, "early_stop": 0.95, "early_stop_round": 2},
    "beam_search": {"n": 8, "beam_width": 4, **JUDGED},
    "dvts": {"n": 8, "beam_width": 2, **JUDGED},
    "lookahead": {"n": 4, "beam_width": 2, "lookahead": 1, **JUDGED},
    "self_refine": {"rounds": 2, **JUDGED},
    "particle_filtering": {"n": 6, "pf_rounds": 2, **JUDGED},
    "rebase": {"n": 8, **JUDGED},
    "mcts": {"mcts_simulations": 6, "beam_width": 2, **JUDGED},
    "compute_optimal": {"n": 16, **JUDGED},
    "math_shepherd": {"n": 3, "rollouts": 3, "verifier": "none"},
    "omega": {"n": 4, "rollouts": 3, "verifier": "none"},
    "deepconf": {"n": 8, "deepconf_warmup": 2, "deepconf_window": 16, "deepconf_keep": 50.0},
}
PROBLEMS = [Problem(row["problem"], row["answer"]) for row in make_dataset(4, seed=11)]


class Interrupted(BaseException):
    """The worker died: nothing in the search may catch this."""


def _search(problem: Problem, values: dict[str, Any], journal: Journal,
            engine: GroundTruthEngine | RecordingEngine | LlamaCppEngine) -> SearchResult:
    config = make_config(strategy=values["strategy"], **values["config"])
    guarded = journal.engine(engine)  # type: ignore[arg-type]
    verifier = journal.verifier(make_verifier(config.verifier, guarded))
    return run_search(problem, config, guarded, verifier)


def _shape(result: SearchResult) -> tuple[Any, ...]:
    """Everything a stored result holds but cache counts (a resumed search's engine has not
    seen the replayed prompts; those counts are what it really recomputed)."""
    nodes = [(n.parent_id, n.kind, n.status, n.text, n.prompt_tokens, n.completion_tokens,
              n.step_score, n.agg_score) for n in result.trace.nodes]
    candidates = [(c.group, c.leaf_id, c.text, c.finish, c.answer, c.step_scores, c.score,
                   c.selected) for c in result.candidates]
    usage = [(u.prompt_tokens, u.completion_tokens, u.calls)
             for u in (result.generation, result.verification)]
    return nodes, candidates, result.selected, result.curve, usage, result.labels


def _interrupted_at(problem: Problem, values: dict[str, Any], boundary: int) -> list[Call]:
    """The checkpoint a search had saved when its worker died in its boundary-th live
    call (the first boundary - 1 calls saved)."""
    saved: list[Call] = []
    starts = 0

    def save(calls: list[Call], first: int, _key: str) -> None:
        assert first == len(saved)  # appended in order, nothing skipped
        saved.extend(calls)

    def guard() -> None:
        nonlocal starts
        starts += 1
        if starts == boundary:
            raise Interrupted()

    with pytest.raises(Interrupted):
        _search(problem, values, Journal(save=save, guard=guard), GroundTruthEngine())
    return decode_calls(encode_calls(saved))  # as stored


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_resumed_search_ends_as_the_uninterrupted_one(strategy: str) -> None:
    values = {"strategy": strategy, "config": CONFIGS[strategy]}
    for problem in PROBLEMS:
        whole = Journal()
        reference = _search(problem, values, whole, GroundTruthEngine())
        calls = len(whole.made)
        for boundary in range(2, calls + 1):
            recorded = _interrupted_at(problem, values, boundary)
            assert len(recorded) == boundary - 1
            counted = RecordingEngine(GroundTruthEngine())  # type: ignore[arg-type]
            journal = Journal(recorded)
            resumed = _search(problem, values, journal, counted)
            assert _shape(resumed) == _shape(reference), (strategy, boundary)
            assert journal.replayed == boundary - 1
            assert len(journal.made) == calls - journal.replayed
            # Nothing replayed reached the engine: its calls are the live ones only.
            assert counted.generated.calls == journal.made.count("generate")
            assert journal.wasted.total_tokens == 0


def test_every_strategy_is_covered() -> None:
    assert set(CONFIGS) == set(STRATEGIES)


def _request(seed: int) -> list[GenerationRequest]:
    from ttcq.worker.engines.base import SamplingParams

    return [GenerationRequest((1, 2, 3), SamplingParams(max_tokens=4, seed=seed), 2)]


def test_a_checkpoint_that_no_longer_applies_goes_live_and_counts_what_it_wasted() -> None:
    engine = GroundTruthEngine()
    old = Journal()
    old.engine(engine).generate(_request(seed=1))
    old.engine(engine).generate(_request(seed=2))
    recorded = list(old._unsaved)  # what its save would have stored
    saves: list[tuple[int, int]] = []
    journal = Journal(recorded, save=lambda calls, first, _k: saves.append((first, len(calls))))
    wrapped = journal.engine(engine)
    wrapped.generate(_request(seed=1))  # as recorded: replayed
    wrapped.generate(_request(seed=9))  # not what was recorded: live from here
    wrapped.generate(_request(seed=10))  # the save before it rewrites the checkpoint
    assert journal.replayed == 1
    assert journal.wasted.total_tokens == recorded[1].usage().total_tokens > 0
    # Written anew from the start (the replayed call, before the new one), then appended.
    assert saves == [(0, 1), (1, 1)]


def test_the_call_lost_with_a_worker_is_counted_as_wasted_when_made_again() -> None:
    engine = GroundTruthEngine()
    lost = generate_key(_request(seed=3))
    journal = Journal(lost_call=lost)
    completions: list[list[Completion]] = journal.engine(engine).generate(_request(seed=3))
    cost = sum(c.completion_tokens + c.prompt_tokens for c in completions[0])
    assert journal.wasted.total_tokens == cost
    journal.engine(engine).generate(_request(seed=3))  # only the first live call is it
    assert journal.wasted.total_tokens == cost


LLAMA = {"max_tokens": 24, "max_step_tokens": 12, "max_depth": 3}
LLAMA_CONFIGS: dict[str, dict[str, Any]] = {
    "majority": {"n": 4, "verifier": "none", "early_stop": 0.9, "early_stop_round": 2,
                 "early_stop_min": 2},
    "best_of_n": {"n": 2, **JUDGED},
    "weighted_best_of_n": {"n": 2, **JUDGED},
    "beam_search": {"n": 2, "beam_width": 2, "verifier": "checker"},
    "dvts": {"n": 2, "beam_width": 2, **JUDGED},
    "lookahead": {"n": 2, "beam_width": 2, "lookahead": 1, "verifier": "checker"},
    "self_refine": {"rounds": 1, "verifier": "checker"},
    "particle_filtering": {"n": 2, **JUDGED},
    "rebase": {"n": 2, "verifier": "checker"},
    "compute_optimal": {"n": 2, "verifier": "checker", "policy": {
        "probe": 2, "budget": 2, "bins": [{"min_confidence": 0.0, "strategy": "beam_search",
                                           "n": 2, "config": {"beam_width": 2}}]}},
}


def test_every_strategy_resumes_on_the_llama_cpp_engine(engine: LlamaCppEngine) -> None:
    """llama.cpp's numbers depend on how its KV pool's batches were composed, so a search
    resumed there continues with slightly different floating-point values than an
    uninterrupted one would (docs/operations.md, Preemption). What holds is asserted: no engine call
    for what is replayed, the replayed part exactly as recorded, and a resume is
    reproducible: two resumes from one checkpoint give one result."""
    problem = Problem("Natalia sold 48 clips in April and half as many in May. "
                      "How many clips did she sell in all?", "72")
    for strategy, values in LLAMA_CONFIGS.items():
        search = {"strategy": strategy, "config": {**LLAMA, **values}}
        recorded = _interrupted_on(engine, problem, search)
        assert recorded, strategy
        results = []
        for _ in range(2):
            counted = RecordingEngine(engine)
            journal = Journal(list(recorded))
            results.append(_search(problem, search, journal, counted))
            assert journal.replayed == len(recorded), strategy
            assert counted.generated.calls == journal.made.count("generate"), strategy
        assert _shape(results[0]) == _shape(results[1]), strategy
        assert results[0].trace.usage().prompt_tokens == results[0].generation.prompt_tokens


def _interrupted_on(engine: LlamaCppEngine, problem: Problem, search: dict[str, Any]
                    ) -> list[Call]:
    """The checkpoint of a search that died in its second live call."""
    saved: list[Call] = []
    starts = 0

    def guard() -> None:
        nonlocal starts
        starts += 1
        if starts == 2:
            raise Interrupted()

    journal = Journal(save=lambda calls, _first, _key: saved.extend(calls), guard=guard)
    with pytest.raises(Interrupted):
        _search(problem, search, journal, engine)
    return saved
