"""The multi-sequence KV pool behind the llama.cpp engine, on the real model."""

import pytest

from ttcq.worker.engines.base import GenerationRequest, SamplingParams
from ttcq.worker.engines.llamacpp import WAVE, LlamaCppEngine


def _prompt(engine: LlamaCppEngine, text: str = "Add 3 and 5. Think step by step.") -> tuple:
    return tuple(engine.chat_prompt([{"role": "user", "content": text}]))


def test_continuing_a_branch_recomputes_only_its_last_token(engine: LlamaCppEngine) -> None:
    engine.reset()
    prompt = _prompt(engine)
    first = engine.generate([GenerationRequest(prompt, SamplingParams(max_tokens=12, seed=1))])
    branch = prompt + tuple(first[0][0].token_ids)
    again = engine.generate([GenerationRequest(branch, SamplingParams(max_tokens=4, seed=2))])
    assert again[0][0].cached_tokens == len(branch) - 1


def test_samples_of_one_prompt_share_its_prefix(engine: LlamaCppEngine) -> None:
    engine.reset()
    prompt = _prompt(engine)
    out = engine.generate([GenerationRequest(prompt, SamplingParams(max_tokens=2, seed=1), n=5)])
    assert [c.cached_tokens for c in out[0]] == [0] + [len(prompt) - 1] * 4


def test_more_samples_than_a_wave_all_come_back_in_order(engine: LlamaCppEngine) -> None:
    engine.reset()
    prompt = _prompt(engine)
    n = WAVE + 3
    params = SamplingParams(max_tokens=6, seed=7, temperature=1.0)
    together = engine.generate([GenerationRequest(prompt, params, n=n)])[0]
    engine.reset()
    last_alone = engine.generate(
        [GenerationRequest(prompt, SamplingParams(max_tokens=6, seed=7 + n - 1, temperature=1.0))]
    )[0][0]
    assert len(together) == n
    assert together[-1].token_ids == last_alone.token_ids  # sample j is seeded with seed + j
    assert len({tuple(c.token_ids) for c in together}) > 1


def test_idle_sequences_are_evicted_when_the_cache_fills() -> None:
    small = LlamaCppEngine(n_ctx=256)  # the pool holds 4 x 256 cells
    params = SamplingParams(max_tokens=32, seed=1, temperature=1.0)
    prompts = [_prompt(small, f"Problem {i}: add {i} and {i + 1}.") for i in range(9)]
    for prompt in prompts:  # up to 180 cells per problem: the pool fills at about the sixth
        out = small.generate([GenerationRequest(prompt, params, n=4)])
        assert all(c.completion_tokens > 0 for c in out[0])
    held = [tuple(tokens) for tokens in small.pool.held.values()]
    assert not any(tokens[: len(prompts[0])] == prompts[0] for tokens in held)  # evicted
    assert any(tokens[: len(prompts[-1])] == prompts[-1] for tokens in held)


def test_long_samples_are_split_into_waves_the_cache_can_hold() -> None:
    small = LlamaCppEngine(n_ctx=256)  # 1024 cells: four samples of up to 256 tokens
    prompt = _prompt(small)
    params = SamplingParams(max_tokens=200, seed=1, temperature=1.5)
    out = small.generate([GenerationRequest(prompt, params, n=WAVE)])[0]
    assert len(out) == WAVE
    assert all(c.completion_tokens > 0 for c in out)


def test_every_evaluated_token_is_reported_as_uncached(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prompts sharing a long stem (as self-judge queries do): the stem is evaluated once,
    and that work is charged, so prompt - cached sums to the tokens really decoded."""
    engine.reset()
    decoded = []
    real = engine.pool._decode_chunk

    def counting(chunk):  # type: ignore[no-untyped-def]
        decoded.append(len(chunk))
        return real(chunk)

    monkeypatch.setattr(engine.pool, "_decode_chunk", counting)
    stem = "Problem: a farmer has 12 cows and buys 7 more, then sells 5 of them. " * 3
    prompts = [_prompt(engine, f"{stem} Is step {k} correct?") for k in range(5)]
    out = engine.next_token_logprobs(prompts, engine.tokenize("Yes"))
    assert sum(r.prompt_tokens - r.cached_tokens for r in out) == sum(decoded)
    assert sum(r.cached_tokens for r in out) > 0  # and the stem was shared

