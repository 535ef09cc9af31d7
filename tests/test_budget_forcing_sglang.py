"""Budget forcing on the real SGLang server, through the worker's own path: SmolLM2's
assistant turn opened with "<think>\\n", its thoughts closed at the budget and answered by
token-id continuations, and the stored tokens exactly what the server reported."""

import pytest
from sqlmodel import select

from lab.recording import SGLangRecorder
from tests.utils.jobs import assert_stored_as_reported, job_of, make_batch
from tests.utils.thinker import THINK_SYSTEM, ThoughtOpening
from ttcq.db.models import TraceNode
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.search.thinking import ANSWER_CUE
from ttcq.worker.service import SessionFactory, process_job

pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]


def test_a_forced_thought_on_sglang_is_answered_and_stored_as_reported(
    sglang_recorded: tuple[SGLangEngine, SGLangRecorder], sessions: SessionFactory,
) -> None:
    engine, client = sglang_recorded
    [job_id] = make_batch(sessions, strategy="majority", verifier="none", n=3, seed=5,
                          max_tokens=64, think_budget=40, system_prompt=THINK_SYSTEM)
    outcome = process_job(sessions=sessions, job_id=job_id, engine=ThoughtOpening(engine),
                          worker_name="t", lease_seconds=60, max_attempts=1)
    assert outcome == "succeeded", job_of(sessions, job_id).error
    cost = assert_stored_as_reported(sessions, job_id, client)
    assert 0 < cost.thinking_tokens <= cost.completion_tokens
    with sessions() as session:
        forced = session.exec(select(TraceNode).where(
            TraceNode.job_id == job_id, TraceNode.kind == "forced")).all()
    assert forced and {n.text for n in forced} == {"</think>" + ANSWER_CUE}
    assert all(n.prompt_tokens == n.completion_tokens == 0 for n in forced)
