"""A test double of the Engine protocol for benchmarks: every sample is one canned
completion, returned at once, so what is measured is ttcq and not a model."""

from collections.abc import Mapping, Sequence
from typing import Any

from ttcq.worker.engines.base import Completion, EngineInfo, GenerationRequest, TokenLogprobs


class ScriptedEngine:
    """pieces are the canned completion's token texts; its ids sit above every id that
    tokenize() makes, so prompts and completions never collide. ends_at is the stop string
    it ends at, or None for end of sequence."""

    def __init__(self, model: str, pieces: Sequence[str], ends_at: str | None):
        self.info = EngineInfo(model=model, eos_token_ids=(2,))
        self.ids = list(range(1000, 1000 + len(pieces)))
        self.text = "".join(pieces)
        self._pieces = dict(zip(self.ids, pieces, strict=True))
        self._ends_at = ends_at

    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) % 900 + 3 for ch in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(self._pieces.get(t, "?") for t in token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        return self.tokenize("".join(m["content"] for m in messages))

    def reset(self) -> None:
        pass

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        return [[self.completion(len(r.prompt_ids)) for _ in range(r.n)] for r in requests]

    def completion(self, prompt_tokens: int) -> Completion:
        return Completion(list(self.ids), self.text, "stop", self._ends_at, prompt_tokens,
                          max(prompt_tokens - 1, 0))

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        return [TokenLogprobs(dict.fromkeys(token_ids, -0.7), len(p), 0) for p in prompts]
