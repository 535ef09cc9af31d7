"""The ground-truth task's thought model: what a reasoning model writes when the
ground-truth engine has a thinking format on (GroundTruthEngine(thinking=Thinking())).

A reply is `<think>\\n`, then attempts, then `</think>` and the answer. Each attempt is a
line of ATTEMPT_TOKENS tokens that solves the problem with probability s = p**L (the
chance one sample of the stepwise task is right), independently; after each attempt the
thought closes with probability 1 / mean_attempts (so a natural thought has a geometric
number of attempts, and lasts 8 + 28 K tokens with K ~ Geometric(1 / mean_attempts)).
The answer is the gold one if some complete attempt of the thought solved the problem,
else a wrong answer drawn from the task's weights: a thought of k attempts is right with
probability 1 - (1 - s)**k, so longer thoughts are worth more and budget forcing has
something to trade.

The text says what happened (an attempt reads "solves" or "misses"), so a continuation of
any prefix needs nothing but the prompt: a thought continued (after "Wait", or from a cut)
draws fresh attempts, which is the same model since both draws are memoryless. After the
close the answer follows; after the forced cue `\\boxed{` only the answer and `}`."""

import random
import re
from dataclasses import dataclass

from lab.ground_truth.task import TaskSpec

THINK_OPEN, THINK_CLOSE = "<think>\n", "</think>"
ATTEMPT = re.compile(r"Try: this (?P<outcome>misses|solves) \[[0-9a-f]{8}\]\n")
ATTEMPT_TOKENS = 28  # one token per character: every attempt line has this length
BOX_OPEN = "\\boxed{"


@dataclass(frozen=True)
class Thinking:
    mean_attempts: float = 24.0  # a natural thought's mean number of attempts

    def __post_init__(self) -> None:
        if self.mean_attempts < 1.0:
            raise ValueError("a thought makes at least one attempt on average")

    @property
    def close_chance(self) -> float:
        return 1.0 / self.mean_attempts


def attempt_text(solves: bool, nonce: int) -> str:
    return f"Try: this {'solves' if solves else 'misses'} [{nonce:08x}]\n"


def answer_text(answer: str) -> str:
    """What follows a thought that closed by itself."""
    return f"\n\nThe answer is {BOX_OPEN}{answer}}}."


def solved(thought: str) -> bool:
    """Whether some complete attempt of a thought solved the problem."""
    return any(m["outcome"] == "solves" for m in ATTEMPT.finditer(thought))


def reply_after(spec: TaskSpec, model: Thinking, reply: str, rng: random.Random,
                limit: int) -> str:
    """The rest of a reply whose text so far is reply; a thought is written only up to
    limit tokens (past them nothing would be returned)."""
    close = reply.find(THINK_CLOSE)
    if close < 0:
        thought = _thinking(spec, model, rng, limit, opening=not reply)
        if THINK_CLOSE not in thought:
            return thought
        reply += thought
        close = reply.find(THINK_CLOSE)
        answer = _answer(spec, solved(reply[:close]), rng)
        return thought + answer_text(answer)
    answer = _answer(spec, solved(reply[:close]), rng)
    if reply.endswith(BOX_OPEN):  # the forced cue: the box's contents close it
        return answer + "}"
    return answer_text(answer)


def _thinking(spec: TaskSpec, model: Thinking, rng: random.Random, limit: int,
              opening: bool) -> str:
    out = [THINK_OPEN] if opening else []
    length = len(out[0]) if opening else 0
    while length < limit:
        out.append(attempt_text(rng.random() < spec.solve_rate, rng.getrandbits(32)))
        length += ATTEMPT_TOKENS
        if rng.random() < model.close_chance:
            out.append(THINK_CLOSE)
            break
    return "".join(out)


def _answer(spec: TaskSpec, right: bool, rng: random.Random) -> str:
    if right:
        return spec.answer
    answers = [answer for answer, _ in spec.wrong]
    return rng.choices(answers, [weight for _, weight in spec.wrong])[0]
