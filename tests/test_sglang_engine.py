"""The SGLang engine against the real SGLang 0.5.23 server (SmolLM2-135M on the CPU):
shapes and order, finish reasons, stop strings, continuation by ids, logprobs, errors, and
usage equal to what the server reported, token for token."""

from typing import Any

import httpx
import pytest

from lab.recording import SGLangRecorder
from lab.servers import RunningServer, free_port
from ttcq.settings import Settings
from ttcq.worker.backends import check_served_engine
from ttcq.worker.engines.base import (
    EngineError,
    GenerationRequest,
    SamplingParams,
    TransientEngineError,
)
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.engines.sglang import SGLangEngine

# A real server starts within the first test that needs it: minutes on a loaded machine.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

SYSTEM = "Solve the problem step by step. Separate the steps with a blank line."


def prompt(engine: SGLangEngine, question: str) -> tuple[int, ...]:
    return tuple(engine.chat_prompt([{"role": "system", "content": SYSTEM},
                                     {"role": "user", "content": question}]))


def sampled(max_tokens: int, **kw: Any) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=kw.pop("temperature", 0.8), **kw)


def test_model_info_tokenizer_and_parameters_come_from_the_server(
    sglang_engine: SGLangEngine, engine: LlamaCppEngine,
) -> None:
    info = sglang_engine.info
    assert info.model.endswith("policy") and info.eos_token_ids == (2,)
    assert info.n_params == engine.info.n_params  # the same weights as the GGUF
    assert not info.honours_seeds  # started without --enable-deterministic-inference
    text = "Tom has 3 apples."
    assert sglang_engine.detokenize(sglang_engine.tokenize(text)) == text
    assert sglang_engine.tokenize(text) == engine.tokenize(text)


def test_samples_come_back_per_request_in_order_with_text_matching_ids(
    sglang_engine: SGLangEngine,
) -> None:
    a, b = prompt(sglang_engine, "What is 2 + 2?"), prompt(sglang_engine, "What is 3 * 3?")
    out = sglang_engine.generate([GenerationRequest(a, sampled(12), n=3),
                                  GenerationRequest(b, sampled(8, temperature=0.0), n=2)])
    assert [len(samples) for samples in out] == [3, 2]
    for samples, limit in zip(out, (12, 8), strict=True):
        for c in samples:
            assert 0 < c.completion_tokens <= limit and c.prompt_tokens >= len(a) - 1
            assert c.text == sglang_engine.detokenize(c.token_ids)
    assert out[1][0].token_ids == out[1][1].token_ids  # greedy: both samples agree


def test_finish_reasons_length_stop_string_and_end_of_text(
    sglang_engine: SGLangEngine,
) -> None:
    p = prompt(sglang_engine, "Tom has 3 apples and buys 4 more. How many apples?")
    (cut,) = sglang_engine.generate([GenerationRequest(p, sampled(3, temperature=0.0))])[0]
    assert cut.finish_reason == "length" and cut.completion_tokens == 3
    (step,) = sglang_engine.generate(
        [GenerationRequest(p, sampled(200, temperature=0.0, stop=("\n\n",)))])[0]
    assert step.finish_reason == "stop" and step.matched_stop == "\n\n"
    assert step.text.endswith("\n\n")  # kept, as in the output ids
    (whole,) = sglang_engine.generate([GenerationRequest(p, sampled(400, temperature=0.0))])[0]
    assert whole.hit_eos and whole.token_ids[-1] == 2 and "<|im_end|>" not in whole.text


def test_continuing_by_ids_reuses_the_radix_cache(sglang_engine: SGLangEngine) -> None:
    p = prompt(sglang_engine, "A pen costs $2. How much do 7 pens cost?")
    (first,) = sglang_engine.generate(
        [GenerationRequest(p, sampled(40, temperature=0.0, stop=("\n\n",)))])[0]
    grown = p + tuple(first.token_ids)
    (second,) = sglang_engine.generate([GenerationRequest(grown, sampled(16))])[0]
    # All but the newest token or two were computed by the first call and kept.
    assert second.prompt_tokens == len(grown) and second.cached_tokens >= len(grown) - 2


def test_a_fresh_prompt_shared_by_samples_is_computed_once_and_counted_exactly(
    sglang_recorded: tuple[SGLangEngine, SGLangRecorder],
) -> None:
    engine, client = sglang_recorded
    p = prompt(engine, "Sara has 17 marbles and finds 25 more. How many now? (fresh)")
    out = engine.generate([GenerationRequest(p, sampled(6), n=4)])[0]
    warm, *samples = client.metas
    assert warm["completion_tokens"] == 0 and warm["prompt_tokens"] == len(p)
    assert [m["cached_tokens"] for m in samples] == [len(p) - 1] * 4  # one token each
    computed = sum(c.prompt_tokens - c.cached_tokens for c in out)
    assert computed == len(p) - warm["cached_tokens"] + 4
    totals = (sum(c.prompt_tokens for c in out), sum(c.cached_tokens for c in out),
              sum(c.completion_tokens for c in out))
    assert totals == client.reported()


def test_next_token_logprobs_of_a_prefix_chain_match_one_prompt_at_a_time(
    sglang_engine: SGLangEngine,
) -> None:
    base = prompt(sglang_engine, "Is 2 + 2 = 4 correct? Answer Yes or No.")
    longer = base + tuple(sglang_engine.tokenize("Yes, because"))
    other = prompt(sglang_engine, "Is 3 + 3 = 7 correct? Answer Yes or No.")
    ids = [sglang_engine.tokenize("Yes")[0], sglang_engine.tokenize("No")[0]]
    together = sglang_engine.next_token_logprobs([longer, base, other], ids)
    alone = [sglang_engine.next_token_logprobs([p], ids)[0] for p in (longer, base, other)]
    # The server computes in bf16: a prompt prefilled cold and the same prompt read with
    # its prefix cached differ by up to 0.15 nats (measured: -0.962 / -1.212 cold against
    # -1.115 / -1.115 cached, for "other"). A position read off by one would be nats away
    # (after "Yes, because" both answers are near -17).
    for joint, single in zip(together, alone, strict=True):
        for token in ids:
            assert joint.logprobs[token] == pytest.approx(single.logprobs[token], abs=0.25)
    # The chain (base, longer) was one sequence: one charged, the other free.
    assert sorted(r.prompt_tokens for r in together[:2]) == [0, len(longer)]
    assert all(r.completion_tokens in (0, 1) for r in together)


def test_an_invalid_request_is_an_engine_error_with_the_servers_words(
    sglang_engine: SGLangEngine,
) -> None:
    p = prompt(sglang_engine, "Hi")
    with pytest.raises(EngineError, match="top_p") as caught:
        sglang_engine.generate([GenerationRequest(p, sampled(4, top_p=7.0))])
    assert not isinstance(caught.value, TransientEngineError)
    assert "HTTP 400" in str(caught.value)


def test_ids_the_server_would_crash_on_never_leave(sglang_engine: SGLangEngine) -> None:
    """SGLang 0.5.23 dies, for every client, on a token id outside the vocabulary."""
    with pytest.raises(EngineError, match="outside the model's vocabulary"):
        sglang_engine.generate([GenerationRequest((1, 2, 999_999), sampled(2))])
    sglang_engine.health_check()  # still up


def test_a_branch_stops_at_the_end_of_the_context(sglang_engine: SGLangEngine) -> None:
    assert sglang_engine.context_length == 8192
    p = prompt(sglang_engine, "Hi")
    request = GenerationRequest(p, sampled(9000))
    assert sglang_engine._sampling(request, 0)["max_new_tokens"] == 8192 - len(p)


def test_an_unreachable_server_is_transient_after_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ttcq.worker.engines.http.BACKOFF_SECONDS", (0.01, 0.01))
    with pytest.raises(TransientEngineError, match="unreachable after 3 tries"):
        SGLangEngine(f"http://127.0.0.1:{free_port()}")


def test_overload_is_retried_then_transient(sglang: RunningServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Test double for the one thing the real server will not do on demand: answer 503."""
    monkeypatch.setattr("ttcq.worker.engines.http.BACKOFF_SECONDS", (0.01,))
    calls = []

    def overloaded(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503, json={"error": {"message": "too many requests queued"}})

    client = ServerClient(sglang.url, name="sglang", transport=httpx.MockTransport(overloaded))
    with pytest.raises(TransientEngineError, match="503: too many requests queued"):
        client.post("/generate", {})
    assert len(calls) == 2
    client.close()


def test_the_worker_refuses_a_server_with_another_model(sglang: RunningServer) -> None:
    with pytest.raises(EngineError, match="not 'meta-llama/Llama-3.1-8B'"):
        SGLangEngine(sglang.url, expected_model="meta-llama/Llama-3.1-8B")
    checked = SGLangEngine(sglang.url, expected_model=sglang.model)
    checked.health_check()
    checked.close()


def test_the_worker_warns_when_the_kv_cache_cannot_hold_its_searches(
    sglang: RunningServer,
) -> None:
    # The test server holds 16,384 tokens: enough for 8 searches, not for 32.
    settings = Settings(engine="sglang", engine_url=sglang.url)
    assert "WARNING" not in check_served_engine(settings, in_flight=8)
    line = check_served_engine(settings, in_flight=32)
    assert "KV cache holds 16384 tokens, 512 per search at TTCQ_IN_FLIGHT=32" in line
