"""The engine interface every backend implements, and the usage it reports."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length"]


class EngineError(Exception):
    """A generation failed for good (bad request, prompt too long)."""


class TransientEngineError(EngineError):
    """A generation failed for a reason that may pass (server restarting, overloaded)."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # k: for each generated token, the logprobs of the k likeliest tokens (DeepConf's token
    # confidence is minus their mean); 0 asks for none.
    top_logprobs: int = 0


@dataclass(frozen=True)
class GenerationRequest:
    """n samples continuing one token prompt; sample j is seeded with seed + j."""

    prompt_ids: tuple[int, ...]
    params: SamplingParams
    n: int = 1


@dataclass
class Usage:
    """Tokens an engine processed: prompt_tokens includes cached_tokens (served from cache)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    seconds: float = 0.0

    def add(self, other: "Usage") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.cached_tokens += other.cached_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        self.seconds += other.seconds

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    # The stop string that ended generation; None with "stop" means end of sequence.
    matched_stop: str | None
    prompt_tokens: int
    cached_tokens: int
    # With params.top_logprobs = k: per generated token, the logprobs of its k likeliest
    # tokens, likeliest first (fewer where the server had fewer).
    top_logprobs: list[list[float]] | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def hit_eos(self) -> bool:
        return self.finish_reason == "stop" and self.matched_stop is None


@dataclass
class TokenLogprobs:
    """Log-probabilities of chosen candidate tokens at the position after a prompt."""

    logprobs: dict[int, float]
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int = 0  # a server samples a token to answer; it is counted


@dataclass
class EngineInfo:
    model: str
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)
    n_params: int = 0  # for the FLOPs estimate; 0 when unknown
    honours_seeds: bool = True  # False: the server samples unseeded, runs do not repeat


class Engine(Protocol):
    info: EngineInfo

    def tokenize(self, text: str) -> list[int]: ...

    def reset(self) -> None:
        """Start a new search from a clean, reproducible cache state (no-op where shared)."""
        ...

    def detokenize(self, token_ids: Sequence[int]) -> str: ...

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        """Token ids of a chat, ending where the assistant's reply starts; template_kwargs
        are the chat template's own switches (Qwen3's enable_thinking), as SGLang's and
        vLLM's chat_template_kwargs."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """One list of n completions per request, in request order."""
        ...

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        """For each prompt, the logprob of each of token_ids as the next token."""
        ...

    def health_check(self) -> None:
        """Generate one real token, or raise EngineError: a worker checks before it
        takes messages."""
        ...

    def close(self) -> None:
        """Release connections (served engines); the engine is not used afterwards."""
        ...


def usage_of(completions: Sequence[Completion]) -> Usage:
    """Usage summed over completions; each counts as one engine sequence."""
    usage = Usage()
    for c in completions:
        usage.prompt_tokens += c.prompt_tokens
        usage.cached_tokens += c.cached_tokens
        usage.completion_tokens += c.completion_tokens
    return usage
