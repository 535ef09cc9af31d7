"""An engine wrapper that counts generation and may veto the next call."""

import time
from collections.abc import Callable, Sequence

from ttcq.worker.engines.base import (
    Completion,
    Engine,
    GenerationRequest,
    TokenLogprobs,
    Usage,
    usage_of,
)
from ttcq.worker.engines.wrapper import EngineWrapper


class MeteredEngine(EngineWrapper):
    """Sums the generation usage the wrapped engine reports (verifiers report their own).
    before_call runs ahead of every call: the worker stops a cancelled job there, between
    search iterations."""

    def __init__(self, engine: Engine, before_call: Callable[[], None] | None = None):
        super().__init__(engine)
        self.usage = Usage()
        self._before_call = before_call

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
        return self.inner.next_token_logprobs(prompts, token_ids)
