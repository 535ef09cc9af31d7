"""Outcome reward models served over HTTP: one score per candidate, for the whole solution.

- sglang: a sequence-classification model served with --is-embedding, POST /classify; the
  score is the sigmoid of the model's one logit.
- vllm: a model served with --runner pooling, POST /pooling, which applies the sigmoid.

The candidate is shown as the RM's chat: the question as the user turn, the solution as the
assistant's. An outcome score has no steps: every step of a candidate gets it (so min, last
and mean aggregate to it); with last_only, beam search scores the partial solution."""

import math
import time
from collections.abc import Sequence
from typing import Any, Literal

from ttcq.worker.engines.base import EngineError, Usage
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.verifiers.base import VerifierOutput

RewardAPI = Literal["sglang", "vllm"]


class OutcomeRewardModel:
    name = "orm"

    def __init__(self, server: ServerClient, tokenizer: HFTokenizer, api: RewardAPI,
                 model: str = ""):
        self.server, self.tokenizer, self.api, self.model = server, tokenizer, api, model

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        if not candidates:
            return VerifierOutput([])
        prompts = [self._prompt(question, "".join(steps)) for steps in candidates]
        start = time.perf_counter()
        values, usage = self._classify(prompts) if self.api == "sglang" else self._pool(prompts)
        usage.calls, usage.seconds = 1, time.perf_counter() - start
        scores = [[v] * (1 if last_only else max(len(steps), 1))
                  for v, steps in zip(values, candidates, strict=True)]
        return VerifierOutput(scores, usage)

    def _prompt(self, question: str, solution: str) -> list[int]:
        messages = [{"role": "user", "content": question},
                    {"role": "assistant", "content": solution.strip()}]
        return self.tokenizer.chat_prompt(messages, reply=False)

    def _classify(self, prompts: list[list[int]]) -> tuple[list[float], Usage]:
        outputs = self.server.post("/classify", {"input_ids": prompts})
        outputs = outputs if isinstance(outputs, list) else [outputs]
        usage = Usage()
        for out in outputs:
            usage.prompt_tokens += out["meta_info"]["prompt_tokens"]
            usage.cached_tokens += out["meta_info"].get("cached_tokens", 0)
        return [_sigmoid(_one(out["embedding"], self.server.name)) for out in outputs], usage

    def _pool(self, prompts: list[list[int]]) -> tuple[list[float], Usage]:
        reply = self.server.post("/pooling", {"model": self.model, "input": prompts})
        rows = sorted(reply["data"], key=lambda row: row.get("index", 0))
        usage_json = reply.get("usage") or {}
        details = usage_json.get("prompt_tokens_details") or {}
        usage = Usage(prompt_tokens=int(usage_json.get("prompt_tokens", 0)),
                      cached_tokens=int(details.get("cached_tokens") or 0))
        return [_one(row["data"], self.server.name) for row in rows], usage


def _one(values: Any, server: str) -> float:
    if not isinstance(values, list) or len(values) != 1:
        raise EngineError(f"{server}: expected one score per input, got {str(values)[:80]}")
    return float(values[0])


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1 + math.exp(logit))
