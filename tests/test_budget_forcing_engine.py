"""Budget forcing on the real llama.cpp engine: SmolLM2 is no reasoner, so its assistant
turn is opened with "<think>\\n"; the thought it writes is closed at the budget, answered,
and the costs are the engine's own counts."""

from typing import Any

import pytest
from sqlmodel import Session

from lab.recording import RecordingEngine
from tests.utils.jobs import job_of, make_batch, stored_tokens
from tests.utils.thinker import THINK_SYSTEM, ThoughtOpening
from ttcq.api.report.data import build_report
from ttcq.db.batches import get_batch
from ttcq.db.models import JobCost
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.thinking import ANSWER_CUE
from ttcq.worker.search.types import Problem
from ttcq.worker.service import SessionFactory, cost_record, process_job
from ttcq.worker.verifiers.factory import make_verifier

BUDGET = 40
SETTINGS: dict[str, Any] = {"strategy": "majority", "verifier": "none", "n": 3, "seed": 5,
                            "max_tokens": 64, "think_budget": BUDGET, "system_prompt": THINK_SYSTEM}


def test_a_forced_thought_is_closed_answered_and_counted(engine: LlamaCppEngine) -> None:
    recorder = RecordingEngine(ThoughtOpening(engine))
    config = make_config(**SETTINGS)
    result = run_search(Problem("What is 2 + 3?", gold="5"), config, recorder,
                        make_verifier("none", recorder))
    forced = [c for c in result.candidates if "</think>" + ANSWER_CUE in c.text]
    assert forced, [c.text for c in result.candidates]
    thought_calls = [(r, u) for r, u in recorder.calls if r[0].params.stop == ("</think>",)]
    thought_tokens = sum(u.completion_tokens for _, u in thought_calls)
    assert result.thinking_tokens == thought_tokens > 0
    for request, _ in thought_calls:
        assert all(r.params.max_tokens <= BUDGET for r in request)
    # Each forced thought is followed by its answer call, continued by token ids.
    answers = [r for requests, _ in recorder.calls for r in requests if not r.params.stop]
    assert len(answers) == len(result.candidates)
    cue = engine.tokenize("</think>" + ANSWER_CUE)
    assert sum(tuple(r.prompt_ids[-len(cue):]) == tuple(cue) for r in answers) == len(forced)
    cost = cost_record(result, 1.0, recorder.info)
    assert (cost.prompt_tokens, cost.cached_tokens, cost.completion_tokens) == recorder.tokens
    assert cost.thinking_tokens == thought_tokens
    usage = result.trace.usage()
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == recorder.tokens



def _thought_tokens(recorder: RecordingEngine) -> int:
    return sum(u.completion_tokens for r, u in recorder.calls
               if r[0].params.stop == ("</think>",))


def test_a_stored_forced_job_costs_what_the_engine_counted(
    engine: LlamaCppEngine, sessions: SessionFactory
) -> None:
    recorder = RecordingEngine(ThoughtOpening(engine))
    [job_id] = make_batch(sessions, **SETTINGS)
    outcome = process_job(sessions=sessions, job_id=job_id, engine=recorder, worker_name="t",
                          lease_seconds=60, max_attempts=1)
    assert outcome == "succeeded", job_of(sessions, job_id).error
    session: Session
    with sessions() as session:
        cost = session.get(JobCost, job_id)
        assert cost is not None
        in_cost, in_trace = stored_tokens(session, job_id)
        batch = get_batch(session=session, batch_id=job_of(sessions, job_id).batch_id)
        assert batch is not None
        report = build_report(session=session, batches=[batch])
    assert in_cost == in_trace == recorder.tokens
    assert cost.thinking_tokens == _thought_tokens(recorder) > 0
    top = max(report.points, key=lambda p: p.budget)
    assert top.thinking_share == pytest.approx(cost.thinking_tokens / cost.completion_tokens)
