"""The policy model judges its own steps: score = P("Yes") / (P("Yes") + P("No"))."""

import math
import time
from collections.abc import Sequence

from worker.engines.base import Engine, Usage
from worker.verifiers.base import VerifierOutput

JUDGE_SYSTEM = "You check math solutions. Answer with one word: Yes or No."


class SelfJudgeVerifier:
    name = "self_judge"

    def __init__(self, engine: Engine):
        self.engine = engine
        self.yes_id = engine.tokenize("Yes")[0]
        self.no_id = engine.tokenize("No")[0]

    def _prompt(self, question: str, steps: Sequence[str]) -> list[int]:
        # The problem and earlier steps come first, so queries for consecutive steps of
        # one candidate share a prefix the engine can reuse.
        shown = "\n\n".join(s.strip() for s in steps)
        user = (
            f"Problem: {question}\n\nSolution so far:\n{shown}\n\n"
            "Is the last step of this solution correct?"
        )
        return self.engine.chat_prompt(
            [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]
        )

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        prompts, owners = [], []
        for i, steps in enumerate(candidates):
            first = max(len(steps) - 1, 0) if last_only else 0
            for j in range(first, len(steps)):
                prompts.append(self._prompt(question, steps[: j + 1]))
                owners.append(i)
        start = time.perf_counter()
        results = self.engine.next_token_logprobs(prompts, [self.yes_id, self.no_id])
        usage = Usage(calls=1 if prompts else 0, seconds=time.perf_counter() - start)
        scores: list[list[float]] = [[] for _ in candidates]
        for owner, result in zip(owners, results, strict=True):
            usage.prompt_tokens += result.prompt_tokens
            usage.cached_tokens += result.cached_tokens
            usage.completion_tokens += result.completion_tokens
            yes = math.exp(result.logprobs[self.yes_id])
            no = math.exp(result.logprobs[self.no_id])
            scores[owner].append(yes / (yes + no) if yes + no > 0 else 0.5)
        return VerifierOutput(scores, usage)
