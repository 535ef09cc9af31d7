"""Top logprobs on the embedded llama.cpp engine (real SmolLM2), and the journal keeping
what DeepConf reads from them, each token's confidence."""

import pytest

from tests.utils.top_logprobs import assert_top_logprobs, counts, generate_in_chunks
from ttcq.worker.engines.base import Completion, GenerationRequest, SamplingParams
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.journal import Call, decode_calls, encode_calls
from ttcq.worker.search.deepconf import token_confidence

K = 5


def prompt(engine: LlamaCppEngine) -> tuple[int, ...]:
    return tuple(engine.chat_prompt([{"role": "user", "content": "Write a short poem."}]))


def test_each_generated_token_has_its_k_likeliest_logprobs(engine: LlamaCppEngine) -> None:
    params = SamplingParams(max_tokens=10, temperature=1.0, seed=3, top_logprobs=K)
    samples = engine.generate([GenerationRequest(prompt(engine), params, n=3)])[0]
    for c in samples:
        assert_top_logprobs(c, K)
        assert all(len(entries) == K for entries in c.top_logprobs or [])


def test_the_greedy_token_is_the_likeliest_and_its_logprob_is_the_models(
    engine: LlamaCppEngine,
) -> None:
    p = prompt(engine)
    params = SamplingParams(max_tokens=4, temperature=0.0, top_logprobs=K)
    (c,) = engine.generate([GenerationRequest(p, params)])[0]
    assert c.top_logprobs is not None
    (alone,) = engine.next_token_logprobs([p], [c.token_ids[0]])
    # llama.cpp's numbers depend on what its KV pool holds (up to 0.16 nats measured, see
    # docs/operations.md); alone on a fresh engine they agree to 1e-4.
    assert c.top_logprobs[0][0] == pytest.approx(alone.logprobs[c.token_ids[0]], abs=0.2)


def test_asking_for_top_logprobs_changes_no_token_and_no_count(engine: LlamaCppEngine) -> None:
    p = prompt(engine)
    plain, with_top = (SamplingParams(max_tokens=8, temperature=1.0, seed=9, top_logprobs=k)
                       for k in (0, K))
    engine.reset()
    (a,) = engine.generate([GenerationRequest(p, plain)])[0]
    engine.reset()
    (b,) = engine.generate([GenerationRequest(p, with_top)])[0]
    assert a.top_logprobs is None and counts(a) == counts(b)


def test_chunks_continued_by_ids_find_all_but_the_newest_token_cached(
    engine: LlamaCppEngine,
) -> None:
    engine.reset()
    p = prompt(engine)
    params = SamplingParams(max_tokens=6, temperature=0.7, seed=4, top_logprobs=K)
    chunks = generate_in_chunks(engine, p, params, chunks=3)
    assert len(chunks) == 3
    for i, chunk in enumerate(chunks):
        assert_top_logprobs(chunk, K)
        sent = len(p) + sum(c.completion_tokens for c in chunks[:i])
        assert chunk.prompt_tokens == sent
        # The previous chunk's last token was sampled, never decoded: that one is new.
        assert i == 0 or chunk.cached_tokens == sent - 1


def test_the_journal_keeps_each_tokens_confidence_in_one_number() -> None:
    """A checkpoint holds one logprob a token, with the token confidence of its k."""
    confident = Completion([5, 2], "a", "stop", None, 10, 4,
                           top_logprobs=[[-0.1, -2.5, -9999.0], [-1e-07, -17.25]])
    plain = Completion([7], "b", "length", None, 0, 0)
    (call,) = decode_calls(encode_calls([Call("generate", "k", [[confident, plain]], 0.5)]))
    [[kept, plain_again]] = call.result
    assert plain_again == plain
    assert (kept.token_ids, kept.text, kept.prompt_tokens, kept.cached_tokens) == (
        [5, 2], "a", 10, 4)
    assert kept.top_logprobs is not None and [len(t) for t in kept.top_logprobs] == [1, 1]
    assert [token_confidence(t) for t in kept.top_logprobs] == [
        token_confidence(t) for t in confident.top_logprobs]
