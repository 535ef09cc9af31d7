"""Monte Carlo reference for s1 budget forcing on the ground-truth task's thought model
(lab.ground_truth.thought), written from the model's and the protocol's definitions alone
(no code of worker.search).

The model: a thought is `<think>\\n` (8 tokens), then attempts of 28 tokens, each solving
the problem with probability s = p**L; after each attempt it closes (`</think>`, 8 tokens)
with probability 1 / mean_attempts. Its answer is the gold one iff some complete attempt
solved it, else a wrong one drawn from the task's weights. So the k-th attempt to solve
is J ~ Geometric(s) over the thought's attempts, however many segments it comes in.

The protocol (docs/search.md, "Reasoning models"): a thought is generated with at most
T - t tokens (t: its tokens so far, forced "Wait"s included), stopping at the close. One
that closes in time with t + kept < M has its close replaced by "Wait" (4 tokens) and goes
on, and is cut once t reaches T; else it is answered as written (`\\n\\nThe answer is
\\boxed{X}.` and the end of the sequence). One cut at T gets `</think>` and the cue
`\\n\\nFinal answer: \\boxed{` appended (31 tokens) and answers `X}` and the end of the
sequence. Without T a thought cut at max_tokens has no answer."""

from dataclasses import dataclass

import numpy as np

from lab.ground_truth.task import TaskSpec
from lab.ground_truth.thought import Thinking

OPEN, ATTEMPT, CLOSE, WAIT = 8, 28, 8, 4  # tokens: one per character
CUE = len("</think>") + len("\n\nFinal answer: \\boxed{")


@dataclass(frozen=True)
class Forcing:
    budget: int | None  # T
    minimum: int | None = None  # M
    max_tokens: int = 4096


@dataclass(frozen=True)
class Trace:
    answer: str | None  # None: cut off without an answer
    thinking: int  # generated tokens of the thought calls
    forced: int  # tokens appended by the protocol ("Wait", the close and the cue)
    answering: int  # generated tokens of the answer call


@dataclass(frozen=True)
class Run:
    correct: bool
    thinking: int
    forced: int
    answering: int

    @property
    def generated(self) -> int:
        return self.thinking + self.answering


def trace(spec: TaskSpec, model: Thinking, forcing: Forcing, rng: np.random.Generator
          ) -> Trace:
    """One sample under the protocol."""
    limit = forcing.budget if forcing.budget is not None else forcing.max_tokens
    insight = rng.geometric(spec.solve_rate) if spec.solve_rate > 0 else np.inf
    thought = attempts = generated = forced = 0  # thought: tokens so far, Waits included
    head = OPEN
    while True:
        written = int(rng.geometric(model.close_chance))  # attempts until the close
        length = head + ATTEMPT * written
        room = limit - thought
        if length + CLOSE > room:  # cut before the close is written
            generated += room
            attempts += min(written, max(0, room - head) // ATTEMPT)
            break
        generated += length + CLOSE
        attempts += written
        if forcing.minimum is None or thought + length >= forcing.minimum:
            answer = _answer(spec, attempts >= insight, rng)
            return Trace(answer, generated, forced, len(_said(answer)) + 1)
        thought += length + WAIT
        forced += WAIT
        head = 0
        if thought >= limit:
            break
    if forcing.budget is None:
        return Trace(None, generated, forced, 0)
    answer = _answer(spec, attempts >= insight, rng)
    return Trace(answer, generated, forced + CUE, len(answer) + 2)  # "X}" and the end


def _said(answer: str) -> str:
    return f"\n\nThe answer is \\boxed{{{answer}}}."


def _answer(spec: TaskSpec, right: bool, rng: np.random.Generator) -> str:
    if right:
        return spec.answer
    answers = [a for a, _ in spec.wrong]
    return answers[rng.choice(len(answers), p=[w for _, w in spec.wrong])]


def majority(spec: TaskSpec, model: Thinking, forcing: Forcing, n: int,
             rng: np.random.Generator) -> Run:
    """n samples, the answer most of them give (ties to the one seen first); a sample
    without an answer does not vote."""
    traces = [trace(spec, model, forcing, rng) for _ in range(n)]
    votes: dict[str, int] = {}
    for t in traces:
        if t.answer is not None:
            votes[t.answer] = votes.get(t.answer, 0) + 1
    chosen = max(votes, key=lambda a: votes[a]) if votes else None
    return Run(chosen == spec.answer, sum(t.thinking for t in traces),
               sum(t.forced for t in traces), sum(t.answering for t in traces))
