"""Checks every engine's top logprobs must pass, and chunked generation by ids (DeepConf's
online mode)."""

from collections.abc import Sequence

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest, SamplingParams


def assert_top_logprobs(completion: Completion, k: int) -> None:
    """One list per generated token, at most k long, likeliest first, all logprobs."""
    top = completion.top_logprobs
    assert top is not None and len(top) == len(completion.token_ids)
    for entries in top:
        assert 0 < len(entries) <= k
        assert entries == sorted(entries, reverse=True) and all(lp <= 0 for lp in entries)


def counts(c: Completion) -> tuple[int, int, int, list[int]]:
    return c.prompt_tokens, c.cached_tokens, c.completion_tokens, c.token_ids


def generate_in_chunks(engine: Engine, prompt: Sequence[int], params: SamplingParams,
                       chunks: int) -> list[Completion]:
    """A trace made of chunks of params.max_tokens, each continuing the last by the prompt
    ids plus every id generated so far (so a prefix cache can keep all of it)."""
    done: list[Completion] = []
    grown = tuple(prompt)
    for _ in range(chunks):
        (chunk,) = engine.generate([GenerationRequest(grown, params)])[0]
        done.append(chunk)
        grown += tuple(chunk.token_ids)
        if chunk.finish_reason != "length":
            break
    return done
