"""A base for engine wrappers: forwards every call, so a wrapper overrides only what it
watches (metering, recording in tests, cache accounting in benchmarks)."""

from collections.abc import Mapping, Sequence
from typing import Any

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest, TokenLogprobs


class EngineWrapper:
    def __init__(self, inner: Engine):
        self.inner = inner
        self.info = inner.info

    def tokenize(self, text: str) -> list[int]:
        return self.inner.tokenize(text)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.inner.detokenize(token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        return self.inner.chat_prompt(messages, template_kwargs)

    def reset(self) -> None:
        self.inner.reset()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        return self.inner.generate(requests)

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        return self.inner.next_token_logprobs(prompts, token_ids)

    def health_check(self) -> None:
        self.inner.health_check()

    def close(self) -> None:
        self.inner.close()
