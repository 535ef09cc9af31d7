"""An engine wrapper that records what the wrapped engine returned, to check cost sums."""

from collections.abc import Sequence

from worker.engines.base import (
    Completion,
    Engine,
    GenerationRequest,
    TokenLogprobs,
    Usage,
    usage_of,
)


class RecordingEngine:
    """Passes every call through and sums the usage of what came back, independently of
    the MeteredEngine a search puts around it."""

    def __init__(self, engine: Engine):
        self.inner = engine
        self.info = engine.info
        self.generated = Usage()
        self.judged = Usage()

    def tokenize(self, text: str) -> list[int]:
        return self.inner.tokenize(text)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.inner.detokenize(token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return self.inner.chat_prompt(messages)

    def reset(self) -> None:
        self.inner.reset()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        results = self.inner.generate(requests)
        call = usage_of([c for samples in results for c in samples])
        call.calls = 1
        self.generated.add(call)
        return results

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        results = self.inner.next_token_logprobs(prompts, token_ids)
        for r in results:
            self.judged.add(Usage(prompt_tokens=r.prompt_tokens, cached_tokens=r.cached_tokens))
        self.judged.calls += 1
        return results
