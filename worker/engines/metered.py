"""An engine wrapper that counts every call and may veto the next one."""

import time
from collections.abc import Callable, Sequence

from worker.engines.base import (
    Completion,
    Engine,
    GenerationRequest,
    TokenLogprobs,
    Usage,
    usage_of,
)


class MeteredEngine:
    """Sums the usage the wrapped engine reports. before_call runs ahead of every call:
    the worker uses it to renew its lease and to stop a cancelled job between iterations."""

    def __init__(self, engine: Engine, before_call: Callable[[], None] | None = None):
        self.inner = engine
        self.info = engine.info
        self.usage = Usage()
        self.logprob_usage = Usage()
        self._before_call = before_call

    def tokenize(self, text: str) -> list[int]:
        return self.inner.tokenize(text)

    def reset(self) -> None:
        self.inner.reset()

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.inner.detokenize(token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return self.inner.chat_prompt(messages)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        if self._before_call:
            self._before_call()
        start = time.perf_counter()
        results = self.inner.generate(requests)
        call = usage_of([c for samples in results for c in samples])
        call.calls, call.seconds = 1, time.perf_counter() - start
        self.usage.add(call)
        return results

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        if self._before_call:
            self._before_call()
        start = time.perf_counter()
        results = self.inner.next_token_logprobs(prompts, token_ids)
        call = Usage(calls=1, seconds=time.perf_counter() - start)
        for r in results:
            call.prompt_tokens += r.prompt_tokens
            call.cached_tokens += r.cached_tokens
        self.logprob_usage.add(call)
        return results
