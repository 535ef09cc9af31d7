"""A process reward model with a token-classification head (TRL's PRMTrainer, trained by
lab/prm_training.py on `ttcq export --format trl`), served by vLLM with --runner pooling:
POST /pooling with task token_classify answers each token's [P(bad), P(good)].

A candidate is shown as the trainer built its rows, so the head reads what it learned:
    [bos] + tokens(question) + for each step: tokens(step) + tokens(STEP_SEPARATOR)
each piece tokenized on its own, steps and question whitespace-trimmed; a step's score is
P(good) at the last token of its separator. One sequence per candidate scores all its
steps in a single forward pass, so last_only costs the same and returns less."""

import time
from collections.abc import Sequence
from typing import Any

from ttcq.worker.engines.base import EngineError, Usage
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.verifiers.base import VerifierOutput

STEP_SEPARATOR = "\n"  # lab/prm_training.py's STEP_SEPARATOR (TRL's default)
GOOD_LABEL = 1  # the trainer's label for a good step (labels True -> 1)


class ClassifierPRM:
    name = "classifier_prm"

    def __init__(self, server: ServerClient, tokenizer: HFTokenizer, model: str = ""):
        self.server, self.tokenizer, self.model = server, tokenizer, model
        bos = tokenizer.tokenizer.token_to_id(tokenizer.bos_token) if tokenizer.bos_token else None
        self.prefix = [] if bos is None else [bos]  # TRL prepends bos when the tokenizer has one
        self.separator = tokenizer.tokenize(STEP_SEPARATOR)

    def prompt(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """The candidate's token ids and, per step, the position its score is read at."""
        ids = self.prefix + self.tokenizer.tokenize(question.strip())
        judged = []
        for step in steps:
            ids += self.tokenizer.tokenize(step.strip()) + self.separator
            judged.append(len(ids) - 1)
        return ids, judged

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        scored = [i for i, steps in enumerate(candidates) if steps]  # no steps: nothing to judge
        scores: list[list[float]] = [[] for _ in candidates]
        if not scored:
            return VerifierOutput(scores)
        prompts = [self.prompt(question, candidates[i]) for i in scored]
        start = time.perf_counter()
        per_token, usage = self._pool([ids for ids, _ in prompts])
        usage.calls, usage.seconds = 1, time.perf_counter() - start
        for i, (ids, judged), rows in zip(scored, prompts, per_token, strict=True):
            if len(rows) != len(ids):
                raise EngineError(f"{self.server.name}: {len(rows)} token outputs for "
                                  f"{len(ids)} tokens")
            positions = judged[-1:] if last_only else judged
            scores[i] = [_good(rows[p], self.server.name) for p in positions]
        return VerifierOutput(scores, usage)

    def _pool(self, prompts: list[list[int]]) -> tuple[list[list[Any]], Usage]:
        reply = self.server.post("/pooling", {"model": self.model, "input": prompts,
                                              "task": "token_classify"})
        rows = sorted(reply["data"], key=lambda row: row.get("index", 0))
        if len(rows) != len(prompts):
            raise EngineError(f"{self.server.name}: {len(rows)} outputs for {len(prompts)} "
                              "candidates")
        usage_json = reply.get("usage") or {}
        details = usage_json.get("prompt_tokens_details") or {}
        usage = Usage(prompt_tokens=int(usage_json.get("prompt_tokens", 0)),
                      cached_tokens=int(details.get("cached_tokens") or 0))
        return [row["data"] for row in rows], usage


def _good(probabilities: Any, server: str) -> float:
    """P(good) from one token's two class probabilities (vLLM applies the softmax)."""
    if not isinstance(probabilities, list) or len(probabilities) != 2:
        raise EngineError(f"{server}: expected two class probabilities per token, got "
                          f"{str(probabilities)[:80]}")
    return float(probabilities[GOOD_LABEL])
