"""What the served engines share: the model's tokenizer held locally, the server's
connection, and the check a worker runs before it takes messages."""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from ttcq.worker.engines.base import (
    Completion,
    EngineError,
    EngineInfo,
    GenerationRequest,
    SamplingParams,
)
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.engines.http import ServerClient


class ServedEngine(ABC):
    server: ServerClient
    tokenizer: HFTokenizer
    info: EngineInfo

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.tokenize(text)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.detokenize(token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        return self.tokenizer.chat_prompt(messages, template_kwargs=template_kwargs)

    def reset(self) -> None:  # noqa: B027 - deliberately nothing, not a hook to fill
        """Nothing to do: the server's cache is shared by every search, on purpose."""

    def close(self) -> None:
        self.server.close()

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """Each served engine speaks its own server's API."""

    def health_check(self) -> None:
        """A real one-token generation, as a worker checks before it takes messages."""
        prompt = self.chat_prompt([{"role": "user", "content": "Say OK."}])
        request = GenerationRequest(tuple(prompt), SamplingParams(max_tokens=1, temperature=0))
        if not self.generate([request])[0][0].token_ids:
            raise EngineError(f"{self.server.name}: the health generation returned no token")
