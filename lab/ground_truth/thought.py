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
any prefix needs nothing but the prompt. A thought cut mid-way (a call's token limit, as
answer probing and DeepConf cut it) goes on where it was cut: a cut tag or attempt line is
finished first (the outcome it shows is kept), and one cut just after an attempt draws its
close then, so a thought written in pieces is distributed as one written whole. After
"Wait" it draws fresh attempts (the same model: both draws are memoryless). After the close
the answer follows; after the forced cue `\\boxed{` only the answer and `}`.

How an answer is drawn: the gold one if some complete attempt before the close solved, else
a wrong one drawn from the task's weights with the call's generator, which is seeded by the
whole prompt. So the same prefix always answers the same, and an unsolved thought asked
again later (answer probing's next probe: a longer prefix) draws its wrong answer afresh,
independently of its earlier probes."""

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
        thought = _thinking(spec, model, reply, rng, limit)
        close = (reply + thought).find(THINK_CLOSE)
        if close < 0:
            return thought
        answer = _answer(spec, solved((reply + thought)[:close]), rng)
        return thought + answer_text(answer)
    answer = _answer(spec, solved(reply[:close]), rng)
    if reply.endswith(BOX_OPEN):  # the forced cue: the box's contents close it
        return answer + "}"
    # An answer cut mid-way (DeepConf's chunks stop at a blank line) goes on from there.
    written, said = reply[close + len(THINK_CLOSE):], answer_text(answer)
    return said[len(written):] if said.startswith(written) else said


def _thinking(spec: TaskSpec, model: Thinking, reply: str, rng: random.Random,
              limit: int) -> str:
    head = _finish_cut(spec, reply, rng)
    if (reply + head).endswith(THINK_CLOSE):
        return head
    out, length = [head], len(head)
    # The close is drawn after each attempt: after one that ended the prefix, first of all.
    if _ENDS_ATTEMPT.search(reply + head) and rng.random() < model.close_chance:
        return head + THINK_CLOSE
    while length < limit:
        out.append(attempt_text(rng.random() < spec.solve_rate, rng.getrandbits(32)))
        length += ATTEMPT_TOKENS
        if rng.random() < model.close_chance:
            out.append(THINK_CLOSE)
            break
    return "".join(out)


_ENDS_ATTEMPT = re.compile(ATTEMPT.pattern + r"\Z")
_OUTCOME_AT = len("Try: this ")  # where an attempt line shows its outcome


def _finish_cut(spec: TaskSpec, reply: str, rng: random.Random) -> str:
    """The rest of the opening tag, the close tag or the attempt line that reply was cut
    inside of; "" if it was cut at none."""
    if THINK_OPEN.startswith(reply):
        return THINK_OPEN[len(reply):]
    line = reply[reply.rfind("\n") + 1:]
    if line and THINK_CLOSE.startswith(line):
        return THINK_CLOSE[len(line):]
    line = line[max(line.rfind("T"), 0):]  # an attempt may follow "Wait" on its line
    if not line or not attempt_text(True, 0).startswith(line[:_OUTCOME_AT]):
        return ""  # at a line's start, or after "Wait": fresh attempts follow
    solves = line[_OUTCOME_AT] == "s" if len(line) > _OUTCOME_AT else (
        rng.random() < spec.solve_rate)
    whole = attempt_text(solves, rng.getrandbits(32))
    return whole[len(line):] if whole.startswith(line[:_OUTCOME_AT + 1]) else ""


def _answer(spec: TaskSpec, right: bool, rng: random.Random) -> str:
    if right:
        return spec.answer
    answers = [answer for answer, _ in spec.wrong]
    return rng.choices(answers, [weight for _, weight in spec.wrong])[0]
