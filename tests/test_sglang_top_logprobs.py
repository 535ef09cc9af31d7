"""Top logprobs through SGLang's native /generate against the real SGLang 0.5.23 server
(SmolLM2-135M on the CPU): exactly what the server reported, no prompt logprobs, no cost
change, and a trace generated in chunks by ids finding its whole prefix cached."""

import pytest

from lab.recording import SGLangRecorder
from tests.utils.top_logprobs import assert_top_logprobs, counts, generate_in_chunks
from ttcq.worker.engines.base import GenerationRequest, SamplingParams, usage_of
from ttcq.worker.engines.metered import MeteredEngine
from ttcq.worker.engines.sglang import SGLangEngine

pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

K = 4


def prompt(engine: SGLangEngine, question: str) -> tuple[int, ...]:
    return tuple(engine.chat_prompt([{"role": "user", "content": question}]))


def test_top_logprobs_are_the_servers_per_generated_token(
    sglang_recorded: tuple[SGLangEngine, SGLangRecorder],
) -> None:
    engine, client = sglang_recorded
    p = prompt(engine, "Name three colours, one per line.")
    params = SamplingParams(max_tokens=12, temperature=0.8, stop=("\n",), top_logprobs=K)
    plain = SamplingParams(max_tokens=4)
    # One batch may mix samples with and without logprobs.
    samples, (without,) = engine.generate([GenerationRequest(p, params, n=2),
                                           GenerationRequest(p, plain)])
    assert without.top_logprobs is None
    sent = [m for m in client.metas if m["completion_tokens"] > 0]
    assert len(sent) == 3 and not sent[2].get("output_top_logprobs")
    for c, meta in zip(samples, sent[:2], strict=True):
        assert_top_logprobs(c, K)
        assert c.top_logprobs == [[e[0] for e in top] for top in meta["output_top_logprobs"]]
        chosen = [lp for lp, *_ in meta["output_token_logprobs"]]
        assert all(lp <= top[0] for lp, top in zip(chosen, c.top_logprobs, strict=True))
        assert not meta.get("input_token_logprobs")  # the prompt's were not computed


def test_asking_for_top_logprobs_costs_the_same_tokens(sglang_engine: SGLangEngine) -> None:
    p = prompt(sglang_engine, "Say OK.")
    runs = [sglang_engine.generate([GenerationRequest(
        p, SamplingParams(max_tokens=24, temperature=0.0, top_logprobs=k))])[0][0]
        for k in (0, K, 0)]
    cold, with_top, plain = runs
    assert cold.top_logprobs is None and with_top.hit_eos  # the EOS token has its list too
    assert_top_logprobs(with_top, K)
    # The same greedy tokens, and the prompt found cached as far as without logprobs.
    assert counts(with_top) == counts(plain) and with_top.cached_tokens == len(p) - 1


def test_a_trace_in_chunks_by_ids_reuses_the_whole_previous_sequence(
    sglang_recorded: tuple[SGLangEngine, SGLangRecorder],
) -> None:
    engine, client = sglang_recorded
    metered = MeteredEngine(engine)
    p = prompt(engine, "Write a long story about a lighthouse keeper.")
    params = SamplingParams(max_tokens=8, temperature=0.7, top_logprobs=K)
    chunks = generate_in_chunks(metered, p, params, chunks=3)
    assert len(chunks) == 3
    for i, (chunk, meta) in enumerate(zip(chunks, client.metas, strict=True)):
        assert_top_logprobs(chunk, K)
        assert chunk.top_logprobs == [[e[0] for e in t] for t in meta["output_top_logprobs"]]
        sent = len(p) + sum(c.completion_tokens for c in chunks[:i])
        assert chunk.prompt_tokens == sent
        # The previous chunk's last token was sampled, never computed: the rest is cached.
        assert i == 0 or chunk.cached_tokens == sent - 1
    whole = usage_of(chunks)
    stored = (whole.prompt_tokens, whole.cached_tokens, whole.completion_tokens)
    assert stored == client.reported()
    assert stored == (metered.usage.prompt_tokens, metered.usage.cached_tokens,
                      metered.usage.completion_tokens)
