"""What judges that read a step's score off two tokens' logprobs share: the self-judge
(Yes/No) and LM-head PRMs (+/-). A judge says how to prompt for a step; this asks the
engine for every requested step at once and counts what it cost."""

import math
import time
from collections.abc import Callable, Sequence

from ttcq.worker.engines.base import Engine, Usage
from ttcq.worker.verifiers.base import VerifierOutput

StepPrompt = Callable[[str, Sequence[str]], list[int]]  # (question, steps so far) -> ids


def good_share(good_logprob: float, bad_logprob: float) -> float:
    """P(good) / (P(good) + P(bad)), computed stably; 0.5 when both are impossible."""
    top = max(good_logprob, bad_logprob)
    if top == -math.inf:
        return 0.5
    good, bad = math.exp(good_logprob - top), math.exp(bad_logprob - top)
    return good / (good + bad)


def judge_steps(
    engine: Engine, prompt: StepPrompt, good: int, bad: int, question: str,
    candidates: Sequence[Sequence[str]], *, last_only: bool,
) -> VerifierOutput:
    """Score each step (or each candidate's last step) in one engine call."""
    prompts, owners = [], []
    for i, steps in enumerate(candidates):
        first = max(len(steps) - 1, 0) if last_only else 0
        for j in range(first, len(steps)):
            prompts.append(prompt(question, steps[: j + 1]))
            owners.append(i)
    start = time.perf_counter()
    results = engine.next_token_logprobs(prompts, [good, bad])
    usage = Usage(calls=1 if prompts else 0, seconds=time.perf_counter() - start)
    scores: list[list[float]] = [[] for _ in candidates]
    for owner, result in zip(owners, results, strict=True):
        usage.prompt_tokens += result.prompt_tokens
        usage.cached_tokens += result.cached_tokens
        usage.completion_tokens += result.completion_tokens
        scores[owner].append(good_share(result.logprobs[good], result.logprobs[bad]))
    return VerifierOutput(scores, usage)
