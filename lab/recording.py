"""A test double around a real engine: records what it returned, to check cost sums
independently of the MeteredEngine a search puts around it."""

from collections.abc import Sequence
from typing import Any

from ttcq.worker.engines.base import (
    Completion,
    Engine,
    GenerationRequest,
    TokenLogprobs,
    Usage,
    usage_of,
)
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.engines.wrapper import EngineWrapper


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


Tokens = tuple[int, int, int]  # prompt, cached, completion


class SGLangRecorder(ServerClient):
    """Test double around the real HTTP client of an SGLang server: keeps every meta_info
    the server sent, generation and logprob (verifier) calls apart."""

    def __init__(self, url: str):
        super().__init__(url, name="sglang (recorded)")
        self.metas: list[dict[str, Any]] = []
        self.logprob_metas: list[dict[str, Any]] = []

    def post(self, path: str, body: dict[str, Any]) -> Any:
        reply = super().post(path, body)
        outs = [out["meta_info"] for out in (reply if isinstance(reply, list) else [reply])]
        # Verifier calls name the tokens they read; generation may ask logprobs too (top-k).
        (self.logprob_metas if "token_ids_logprob" in body else self.metas).extend(outs)
        return reply

    def reported(self, *, logprobs: bool = False) -> Tokens:
        """(prompt, cached, completion) tokens the server reported, summed."""
        metas = self.logprob_metas if logprobs else self.metas
        prompt, cached, completion = (sum(m[k] for m in metas) for k in
                                      ("prompt_tokens", "cached_tokens", "completion_tokens"))
        return prompt, cached, completion


class OpenAIRecorder(ServerClient):
    """The same for an OpenAI-compatible server: keeps every usage it sent."""

    def __init__(self, url: str):
        super().__init__(url, name="openai (recorded)")
        self.usages: list[dict[str, Any]] = []
        self.logprob_usages: list[dict[str, Any]] = []
        self.choices: list[dict[str, Any]] = []  # of generation calls, as sent

    def post(self, path: str, body: dict[str, Any]) -> Any:
        reply = super().post(path, body)
        # Generation always sends n; a verifier's logprob call never does (both may
        # ask for logprobs).
        if "n" in body:
            self.usages.append(reply["usage"])
            self.choices.extend(reply["choices"])
        else:
            self.logprob_usages.append(reply["usage"])
        return reply

    def reported(self, *, logprobs: bool = False) -> Tokens:
        usages = self.logprob_usages if logprobs else self.usages
        cached = sum((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
                     for u in usages)
        return (sum(u["prompt_tokens"] for u in usages), cached,
                sum(u["completion_tokens"] for u in usages))
