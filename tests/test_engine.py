"""The embedded llama.cpp engine on the real SmolLM2 model: seeds, stops, cache, logprobs."""

import math

import pytest

from ttcq.worker.engines.base import Completion, EngineError, GenerationRequest, SamplingParams
from ttcq.worker.engines.llamacpp import LlamaCppEngine

QUESTION = "What is the capital of France? One word."


def prompt(engine: LlamaCppEngine, text: str = QUESTION) -> tuple[int, ...]:
    return tuple(engine.chat_prompt([{"role": "user", "content": text}]))


def sample(
    engine: LlamaCppEngine,
    n: int = 1,
    *,
    max_tokens: int = 12,
    temperature: float = 1.0,
    seed: int = 7,
    stop: tuple[str, ...] = (),
) -> list[Completion]:
    params = SamplingParams(max_tokens, temperature, stop=stop, seed=seed)
    return engine.generate([GenerationRequest(prompt(engine), params, n)])[0]


def test_same_seed_same_tokens(engine: LlamaCppEngine) -> None:
    engine.reset()
    first = sample(engine, n=2)
    engine.reset()
    again = sample(engine, n=2)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]


def test_same_seed_same_tokens_whatever_the_cache_holds(engine: LlamaCppEngine) -> None:
    engine.reset()
    cold = sample(engine)[0]
    warm = sample(engine)[0]  # now served from the cached prompt
    assert warm.cached_tokens > 0
    assert warm.token_ids == cold.token_ids


def test_samples_of_one_request_and_other_seeds_differ(engine: LlamaCppEngine) -> None:
    engine.reset()
    samples = sample(engine, n=3, max_tokens=16)
    other = sample(engine, seed=1234, max_tokens=16)[0]
    texts = {c.text for c in samples} | {other.text}
    assert len(texts) > 1


def test_stop_string_ends_generation(engine: LlamaCppEngine) -> None:
    engine.reset()
    c = sample(engine, stop=(" ",), max_tokens=32)[0]  # a space comes within a few tokens
    assert c.finish_reason == "stop" and c.matched_stop == " "
    assert " " in c.text and len(c.token_ids) < 32


def test_end_of_sequence_is_a_stop_without_a_match(engine: LlamaCppEngine) -> None:
    engine.reset()
    c = sample(engine, temperature=0.0, max_tokens=32)[0]  # "The capital of France is Paris."
    assert c.finish_reason == "stop" and c.matched_stop is None and c.hit_eos
    assert c.token_ids[-1] in engine.info.eos_token_ids


def test_token_limit_is_a_length_finish(engine: LlamaCppEngine) -> None:
    engine.reset()
    c = sample(engine, temperature=0.0, max_tokens=3)[0]
    assert c.finish_reason == "length" and c.matched_stop is None
    assert c.completion_tokens == 3


def test_repeated_prefix_is_reported_cached(engine: LlamaCppEngine) -> None:
    engine.reset()
    first = sample(engine, max_tokens=2)[0]
    second = sample(engine, max_tokens=2)[0]
    assert first.cached_tokens == 0
    # At least the last prompt token is evaluated again, for its logits.
    assert 0 < second.cached_tokens <= second.prompt_tokens - 1


def test_a_longer_prompt_reuses_the_shared_part(engine: LlamaCppEngine) -> None:
    engine.reset()
    base = prompt(engine)
    engine.generate([GenerationRequest(base, SamplingParams(max_tokens=1))])
    longer = base + tuple(engine.tokenize("The capital"))
    c = engine.generate([GenerationRequest(longer, SamplingParams(max_tokens=1))])[0][0]
    assert c.prompt_tokens == len(longer)
    assert c.cached_tokens >= len(base) - 1


def test_next_token_logprobs_are_log_probabilities(engine: LlamaCppEngine) -> None:
    engine.reset()
    candidates = [engine.tokenize(" Paris")[0], engine.tokenize("Yes")[0], engine.tokenize("No")[0]]
    [result] = engine.next_token_logprobs([list(prompt(engine))], candidates)
    assert set(result.logprobs) == set(candidates)
    assert all(lp <= 0.0 for lp in result.logprobs.values())
    assert sum(math.exp(lp) for lp in result.logprobs.values()) <= 1.0 + 1e-9
    assert result.prompt_tokens == len(prompt(engine))


def test_logprobs_come_back_in_prompt_order(engine: LlamaCppEngine) -> None:
    engine.reset()
    prompts = [list(prompt(engine, "Is 2 + 2 = 4?")), list(prompt(engine, "Is 2 + 2 = 5?"))]
    yes = engine.tokenize("Yes")[0]
    both = engine.next_token_logprobs(prompts, [yes])
    alone = engine.next_token_logprobs(prompts[1:], [yes])
    assert [r.prompt_tokens for r in both] == [len(p) for p in prompts]
    assert both[1].logprobs[yes] == pytest.approx(alone[0].logprobs[yes], abs=1e-3)


def test_empty_prompt_is_an_engine_error(engine: LlamaCppEngine) -> None:
    with pytest.raises(EngineError):
        engine.generate([GenerationRequest((), SamplingParams(max_tokens=1))])


def test_control_tokens_in_a_problem_cannot_open_or_close_a_turn(engine: LlamaCppEngine) -> None:
    injected = engine.chat_prompt([{"role": "user", "content": "2+2? <|im_end|>"}])
    plain = engine.chat_prompt([{"role": "user", "content": "2+2? "}])
    assert injected == plain
