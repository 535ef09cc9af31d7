"""Any OpenAI-compatible /v1/completions server: vLLM, SGLang's OpenAI API, hosted APIs.

Prompts go as token-id lists (the completions API takes them), one HTTP request per
prompt with its n samples, all of a call's requests at once. Usage is per request, so the
request's prompt and cached tokens are charged to its first sample (the prompt was
processed once for all n): sums stay exactly what the server reported.

vLLM is recognised (its /v1/models says owned_by "vllm") and then asked for what the plain
API lacks: generated token ids, the stop string kept in the text, top_k, and logprobs keyed
by token id. Elsewhere the ids come from the local tokenizer and a matched stop string is
put back on the text, which is as close as those APIs allow."""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ttcq.worker.engines.base import (
    Completion,
    EngineError,
    EngineInfo,
    GenerationRequest,
    SamplingParams,
    TokenLogprobs,
)
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.engines.model_folder import count_parameters
from ttcq.worker.engines.served import ServedEngine

TOP_LOGPROBS = 20  # the most the OpenAI API (and vLLM by default) returns per position
REQUESTS_AT_ONCE = 64


class OpenAIEngine(ServedEngine):
    def __init__(self, url: str, *, model: str, tokenizer_path: str, api_key: str = "",
                 timeout: float = 600.0, server: ServerClient | None = None):
        self.server = server or ServerClient(url, name=f"openai {url}", timeout=timeout,
                                             api_key=api_key)
        try:
            listed = self.server.get("/v1/models").get("data", [])
            names = [m.get("id") for m in listed]
            if model not in names:
                raise EngineError(f"{self.server.name} serves {names}, not {model!r}")
        except Exception:
            self.server.close()
            raise
        self.model = model
        self.vllm = any(m.get("owned_by") == "vllm" for m in listed)
        self.tokenizer = HFTokenizer(tokenizer_path)
        # Seeds: the API takes one per request, and vLLM honours it; hosted APIs only try.
        self.info = EngineInfo(model=model, eos_token_ids=self.tokenizer.eos_token_ids,
                               n_params=count_parameters(tokenizer_path),
                               honours_seeds=self.vllm)
        self._pool = ThreadPoolExecutor(REQUESTS_AT_ONCE, thread_name_prefix="ttcq-openai")

    def close(self) -> None:
        self._pool.shutdown()
        self.server.close()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        for r in requests:
            if not r.prompt_ids:
                raise EngineError("empty prompt")
        return list(self._pool.map(self._one_request, requests))

    def _body(self, prompt: Sequence[int], params: SamplingParams, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "prompt": list(prompt), "n": n,
            "max_tokens": params.max_tokens, "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.top_logprobs > 0:
            # vLLM refuses k above its --max-logprobs (20 by default) with a 400.
            body["logprobs"] = params.top_logprobs
        if self.vllm:
            body.update(return_token_ids=True, include_stop_str_in_output=True,
                        stop_token_ids=list(self.info.eos_token_ids))
            if params.top_k > 0:
                body["top_k"] = params.top_k
            if params.top_logprobs > 0:
                # Keyed by id, not text: two tokens that decode alike would share a key.
                body["return_tokens_as_token_ids"] = True
        return body

    def _one_request(self, request: GenerationRequest) -> list[Completion]:
        reply = self.server.post("/v1/completions", self._body(request.prompt_ids,
                                                               request.params, request.n))
        choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != request.n:
            raise EngineError(f"{self.server.name}: {len(choices)} choices for n={request.n}")
        usage = reply.get("usage") or {}
        completions = [self._completion(c, request.params) for c in choices]
        completions[0].prompt_tokens = int(usage.get("prompt_tokens", 0))
        completions[0].cached_tokens = _cached(usage)
        reported = int(usage.get("completion_tokens", 0))
        if reported != sum(c.completion_tokens for c in completions):
            raise EngineError(f"{self.server.name} reported {reported} completion tokens for "
                              f"{sum(c.completion_tokens for c in completions)} token ids")
        return completions

    def _completion(self, choice: dict[str, Any], params: SamplingParams) -> Completion:
        text = choice.get("text") or ""
        stop_reason = choice.get("stop_reason")
        if not self.vllm and choice.get("finish_reason") == "stop" and len(params.stop) == 1:
            # The plain API trims the stop string and says not whether one matched or the
            # model ended; with one stop string, the text decides (steps end with it).
            stop_reason = params.stop[0] if not text.endswith(params.stop[0]) else None
            text += stop_reason or ""
        ids = choice.get("token_ids") if self.vllm else self.tokenize(text)
        if ids is None:
            raise EngineError(f"{self.server.name} returned no token ids")
        top = _top_logprobs(choice, params.top_logprobs) if params.top_logprobs else None
        if self.vllm and top is not None and len(top) != len(ids):
            raise EngineError(f"{self.server.name} sent top logprobs for {len(top)} of "
                              f"{len(ids)} generated tokens")
        return Completion(
            token_ids=list(ids), text=text,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            matched_stop=stop_reason if isinstance(stop_reason, str) else None,
            prompt_tokens=0, cached_tokens=0,
            top_logprobs=top,
        )

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        """Read off the top logprobs of one generated token. A candidate outside the top
        TOP_LOGPROBS gets the smallest one shown (an upper bound on its logprob)."""
        return list(self._pool.map(lambda p: self._logprobs(p, token_ids), prompts))

    def _logprobs(self, prompt: Sequence[int], token_ids: Sequence[int]) -> TokenLogprobs:
        body: dict[str, Any] = {"model": self.model, "prompt": list(prompt), "max_tokens": 1,
                                "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        if self.vllm:
            body["return_tokens_as_token_ids"] = True
        reply = self.server.post("/v1/completions", body)
        top = reply["choices"][0]["logprobs"]["top_logprobs"][0]
        by_id = {self._token_key(t): lp for t, lp in top.items()}
        floor = min(top.values())
        usage = reply.get("usage") or {}
        return TokenLogprobs(
            logprobs={t: by_id.get(t, floor) for t in token_ids},
            prompt_tokens=int(usage.get("prompt_tokens", 0)), cached_tokens=_cached(usage),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def _token_key(self, key: str) -> int:
        """vLLM names tokens "token_id:123" when asked to; elsewhere by their text."""
        if key.startswith("token_id:"):
            return int(key.removeprefix("token_id:"))
        ids = self.tokenize(key)
        return ids[0] if len(ids) == 1 else -1


def _cached(usage: dict[str, Any]) -> int:
    details = usage.get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)


def _top_logprobs(choice: dict[str, Any], k: int) -> list[list[float]]:
    """Per generated token, the k likeliest logprobs. The API's dict per position also holds
    the sampled token (k + 1 entries when it is not among the k), and is unordered."""
    positions = (choice.get("logprobs") or {}).get("top_logprobs") or []
    return [sorted((top or {}).values(), reverse=True)[:k] for top in positions]
