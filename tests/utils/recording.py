"""A test double around a real engine: records what it returned, to check cost sums
independently of the MeteredEngine a search puts around it."""

from collections.abc import Sequence

from worker.engines.base import (
    Completion,
    Engine,
    GenerationRequest,
    TokenLogprobs,
    Usage,
    usage_of,
)
from worker.engines.wrapper import EngineWrapper


class RecordingEngine(EngineWrapper):
    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.calls: list[tuple[list[GenerationRequest], Usage]] = []
        self.generated = Usage()
        self.judged = Usage()

    @property
    def tokens(self) -> tuple[int, int, int]:
        """(prompt, cached, completion) tokens over every generate call."""
        g = self.generated
        return (g.prompt_tokens, g.cached_tokens, g.completion_tokens)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        results = self.inner.generate(requests)
        call = usage_of([c for samples in results for c in samples])
        call.calls = 1
        self.calls.append((list(requests), call))
        self.generated.add(call)
        return results

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        results = self.inner.next_token_logprobs(prompts, token_ids)
        for r in results:
            self.judged.add(Usage(prompt_tokens=r.prompt_tokens, cached_tokens=r.cached_tokens,
                                  completion_tokens=r.completion_tokens))
        self.judged.calls += 1
        return results
