"""The production engine: an SGLang server's native /generate API, by token ids.

- Branches continue by ids (prompt ids + output ids), never re-tokenised text, so the
  radix cache matches them. `no_stop_trim` keeps the stop string in `text` as it is in
  `output_ids`, so text and ids describe the same tokens.
- A call's samples go out as one batch of input_ids with n = 1 each: SGLang's own n > 1
  first runs a hidden prefill per prompt whose tokens it never reports (tokenizer manager,
  "cache the common prefix"), which would make costs inexact. Instead a prompt that several
  samples share and the server has not seen is warmed here (max_new_tokens 0), and that
  prefill's reported tokens are charged to the prompt's first sample.
- Usage is what the server reports per sequence in meta_info, nothing estimated.
- Seeds (sampling_seed) only reach a server started with --enable-deterministic-inference;
  elsewhere EngineInfo.honours_seeds is False and results say so."""

from collections import OrderedDict
from collections.abc import Sequence
from threading import Lock
from typing import Any

from ttcq.worker.engines.base import (
    Completion,
    EngineError,
    EngineInfo,
    GenerationRequest,
    TokenLogprobs,
    TransientEngineError,
)
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.engines.model_folder import context_length, count_parameters
from ttcq.worker.engines.prefix_chains import chains
from ttcq.worker.engines.served import ServedEngine

WARM_MIN_TOKENS = 16  # a shared prompt is warmed when this much of it may be uncached
SEEN_LIMIT = 4096  # sequences remembered as being in the server's cache


class SGLangEngine(ServedEngine):
    def __init__(self, url: str, *, tokenizer_path: str = "", expected_model: str = "",
                 timeout: float = 600.0, server: ServerClient | None = None):
        self.server = server or ServerClient(url, name=f"sglang {url}", timeout=timeout)
        try:
            folder = self._check_server(expected_model, tokenizer_path)
        except Exception:
            self.server.close()
            raise
        self.tokenizer = HFTokenizer(folder)
        self.info = EngineInfo(
            model=self._served, eos_token_ids=self.tokenizer.eos_token_ids,
            n_params=count_parameters(folder), honours_seeds=self._seeded,
        )
        self.context_length = context_length(folder)
        self._seen: OrderedDict[tuple[int, ...], None] = OrderedDict()
        self._seen_lock = Lock()

    def _check_server(self, expected_model: str, tokenizer_path: str) -> str:
        """Read what the server serves, refuse a mismatch; the tokenizer's folder."""
        model = self.server.get("/get_model_info")
        self._served = str(model.get("served_model_name") or model.get("model_path") or "")
        if expected_model and expected_model not in (self._served, model.get("model_path")):
            raise EngineError(f"{self.server.name} serves {self._served!r}, "
                              f"not {expected_model!r}")
        if not model.get("is_generation", True):
            raise EngineError(f"{self.server.name} serves an embedding model: use it as a "
                              "reward model, not as the policy")
        server_info = self.server.get("/get_server_info")
        self._seeded = bool(server_info.get("enable_deterministic_inference"))
        # Tokens the server's KV cache holds: what in-flight searches share (see backends).
        self.kv_pool_tokens = int(server_info.get("max_total_num_tokens") or 0)
        return tokenizer_path or str(model.get("tokenizer_path") or model["model_path"])

    # Generation
    def _check_prompt(self, prompt: Sequence[int]) -> None:
        """Refuse here what the server would choke on: SGLang 0.5.23 dies (the whole
        server, every client's requests) on a token id outside its vocabulary."""
        if not prompt:
            raise EngineError("empty prompt")
        vocab = self.tokenizer.vocab_size
        if bad := [t for t in prompt if not 0 <= t < vocab]:
            raise EngineError(f"token id {bad[0]} is outside the model's vocabulary of {vocab}")
        if self.context_length and len(prompt) >= self.context_length:
            raise EngineError(f"prompt of {len(prompt)} tokens exceeds the model's context "
                              f"of {self.context_length}")

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        if not requests:
            return []
        for r in requests:
            self._check_prompt(r.prompt_ids)
        warm = self._warm_up(requests)
        flat = [(i, j) for i, r in enumerate(requests) for j in range(r.n)]
        body: dict[str, Any] = {
            "input_ids": [list(requests[i].prompt_ids) for i, _ in flat],
            "sampling_params": [self._sampling(requests[i], j) for i, j in flat],
        }
        if any(r.params.top_logprobs > 0 for r in requests):
            body.update(_top_logprobs_fields([requests[i] for i, _ in flat]))
        outputs = self._post_generate(body, expected=len(flat))
        results: list[list[Completion]] = [[] for _ in requests]
        for (i, _), out in zip(flat, outputs, strict=True):
            results[i].append(self._completion(out, requests[i].params.top_logprobs))
        for i, (prompt_tokens, cached_tokens) in warm.items():
            first = results[i][0]
            first.prompt_tokens += prompt_tokens
            first.cached_tokens += cached_tokens
        for r, completions in zip(requests, results, strict=True):
            self._remember(r.prompt_ids, *(c.token_ids for c in completions))
        return results

    def _warm_up(self, requests: Sequence[GenerationRequest]) -> dict[int, tuple[int, int]]:
        """Prefill each prompt that several samples share, once, unless the server has
        just seen it; returns request index -> (prompt, cached) tokens of its warm-up."""
        samples: dict[tuple[int, ...], int] = {}
        first: dict[tuple[int, ...], int] = {}
        for i, r in enumerate(requests):
            samples[r.prompt_ids] = samples.get(r.prompt_ids, 0) + r.n
            first.setdefault(r.prompt_ids, i)
        cold = [p for p, n in samples.items() if n > 1 and self._may_be_cold(p)]
        if not cold:
            return {}
        outputs = self._post_generate({"input_ids": [list(p) for p in cold],
                                       "sampling_params": {"max_new_tokens": 0}},
                                      expected=len(cold))
        self._remember(*cold)
        return {first[p]: (out["meta_info"]["prompt_tokens"], out["meta_info"]["cached_tokens"])
                for p, out in zip(cold, outputs, strict=True)}

    def _may_be_cold(self, prompt: tuple[int, ...]) -> bool:
        """True unless this prompt, or all but its last few tokens, was just sent."""
        with self._seen_lock:
            return (prompt not in self._seen
                    and prompt[: max(len(prompt) - WARM_MIN_TOKENS, 1)] not in self._seen)

    def _remember(self, *sequences: Sequence[int]) -> None:
        """Note sequences the server now holds in its radix cache (prompt + output)."""
        with self._seen_lock:
            for seq in sequences:
                self._seen[tuple(seq)] = None
                self._seen.move_to_end(tuple(seq))
            while len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)

    def _sampling(self, request: GenerationRequest, sample: int) -> dict[str, Any]:
        # Only keys SGLang knows: an unknown one is a 400 for the whole batch.
        params, room = request.params, self.context_length or 0
        sampling: dict[str, Any] = {
            # As llama.cpp does, a branch stops at the context's end instead of failing.
            "max_new_tokens": min(params.max_tokens, room - len(request.prompt_ids))
            if room else params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop_token_ids": list(self.info.eos_token_ids),
            "no_stop_trim": True,
        }
        if params.top_k > 0:
            sampling["top_k"] = params.top_k
        if params.stop:
            sampling["stop"] = list(params.stop)
        if self.info.honours_seeds and params.seed is not None:
            sampling["sampling_seed"] = params.seed + sample
        return sampling

    def _post_generate(self, body: dict[str, Any], *, expected: int) -> list[dict[str, Any]]:
        outputs = self.server.post("/generate", body)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        if len(outputs) != expected:
            raise EngineError(f"{self.server.name}: {len(outputs)} outputs for {expected} inputs")
        return outputs

    def _completion(self, out: dict[str, Any], top_logprobs: int = 0) -> Completion:
        meta = out["meta_info"]
        finish = meta.get("finish_reason") or {}
        if finish.get("type") == "abort":
            raise TransientEngineError(f"{self.server.name} aborted a request: {finish}")
        ids = list(out["output_ids"])
        if meta["completion_tokens"] != len(ids):
            raise EngineError(f"{self.server.name} reported {meta['completion_tokens']} "
                              f"completion tokens for {len(ids)} output ids")
        matched = finish.get("matched")
        return Completion(
            token_ids=ids,
            text=out["text"],
            finish_reason="length" if finish.get("type") == "length" else "stop",
            matched_stop=matched if isinstance(matched, str) else None,  # an id: end of text
            prompt_tokens=meta["prompt_tokens"],
            cached_tokens=meta["cached_tokens"],
            top_logprobs=self._top_logprobs(meta, len(ids)) if top_logprobs > 0 else None,
        )

    def _top_logprobs(self, meta: dict[str, Any], generated: int) -> list[list[float]]:
        """Per output token, its top-k entries ([logprob, id, text]) as logprobs, likeliest
        first; they come sorted, and are sorted again so no server version can break it."""
        top = meta.get("output_top_logprobs") or []
        if len(top) != generated:
            raise EngineError(f"{self.server.name} sent top logprobs for {len(top)} of "
                              f"{generated} output tokens")
        return [sorted((float(e[0]) for e in entries or []), reverse=True) for entries in top]

    # Logprobs
    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        """A prompt that is a prefix of another is read off the longer one's input
        logprobs, so each chain of prefixes (a PRM's steps) costs one sequence. Logprobs
        start one token before the shortest prompt of a chain: input logprobs from
        position s cap radix-cache reuse at s."""
        for p in prompts:
            self._check_prompt(p)
        groups = chains([tuple(p) for p in prompts])
        body = {
            "input_ids": [list(prompts[g[-1]]) for g in groups],
            "sampling_params": {"max_new_tokens": 1, "temperature": 0.0},
            "return_logprob": True,
            "token_ids_logprob": list(token_ids),
            "logprob_start_len": [len(prompts[g[0]]) - 1 for g in groups],
        }
        outputs = self._post_generate(body, expected=len(groups))
        results: list[TokenLogprobs | None] = [None] * len(prompts)
        for group, out in zip(groups, outputs, strict=True):
            for i, result in zip(group, self._chain_logprobs(group, prompts, out), strict=True):
                results[i] = result
        self._remember(*(prompts[g[-1]] for g in groups))
        return [r for r in results if r is not None]

    def _chain_logprobs(self, group: list[int], prompts: Sequence[Sequence[int]],
                        out: dict[str, Any]) -> list[TokenLogprobs]:
        meta = out["meta_info"]
        start = len(prompts[group[0]]) - 1
        inputs = meta.get("input_token_ids_logprobs") or []
        found = []
        for i in group:
            # The distribution after prompt i: the input entry of position len(prompt i),
            # or for the longest prompt, the first output position.
            offset = len(prompts[i]) - start
            entry = inputs[offset] if offset < len(inputs) else meta["output_token_ids_logprobs"][0]
            found.append({int(tok): float(lp) for lp, tok, *_ in entry})
        # The chain was one sequence: its usage is charged to its longest prompt.
        return [
            TokenLogprobs(
                logprobs=lp,
                prompt_tokens=meta["prompt_tokens"] if i == group[-1] else 0,
                cached_tokens=meta["cached_tokens"] if i == group[-1] else 0,
                completion_tokens=meta["completion_tokens"] if i == group[-1] else 0,
            )
            for i, lp in zip(group, found, strict=True)
        ]


def _top_logprobs_fields(samples: Sequence[GenerationRequest]) -> dict[str, Any]:
    """/generate's logprob fields, one entry per input. Logprobs start at the prompt's end:
    input logprobs from position s would cap radix-cache reuse at s, and a chunked trace
    continuing by ids must find its whole prefix cached."""
    return {
        "return_logprob": [r.params.top_logprobs > 0 for r in samples],
        "top_logprobs_num": [r.params.top_logprobs for r in samples],
        "logprob_start_len": [len(r.prompt_ids) for r in samples],
    }
