"""Monte Carlo reference for answer probing (Dynasor) on the ground-truth task's thought
model (lab.ground_truth.thought), written from the model's and the protocol's definitions
alone (no code of worker.search).

The model (see simulate_forcing): a thought is `<think>\\n` (8 tokens), then N attempts of
28 tokens, N ~ Geometric(1 / mean_attempts), then `</think>` (8 tokens); the first attempt
to solve is J ~ Geometric(s), s = p**L. A thought written in pieces is the same thought as
one written whole. Asked for its answer (a probe, the forced cue, the natural close), the
model gives the gold answer iff one of its complete attempts so far solved, else a wrong
one drawn afresh from the task's weights, independently of its earlier answers.

The protocol (docs/search.md, "Reasoning models"): a thought is generated in calls that
stop at its close, at its next probe (every K thinking tokens) and at its limit (the budget
T, else max_tokens). At each multiple of K that the thought reaches before it closes and
before its limit, a probe asks for its answer: `X}` and the end of the sequence, greedy
after the close and the cue. Once its last A answers agree the trace ends, answered by its
last probe. A thought that closes first is answered as written (`\\n\\nThe answer is
\\boxed{X}.` and the end of the sequence); one that reaches T gets the close and the cue and
answers `X}` and the end; without T, one that reaches max_tokens has no answer.

DeepConf's chains (deepconf below) are such traces too, their first probe after their
first chunk when that is longer than K."""

import math
from dataclasses import dataclass

import numpy as np

from lab.ground_truth.simulate_forcing import ATTEMPT, CLOSE, OPEN
from lab.ground_truth.task import TaskSpec
from lab.ground_truth.thought import Thinking


@dataclass(frozen=True)
class Probing:
    every: int | None  # K; None: no probes (plain sampling, or budget forcing with T)
    agree: int = 3  # A
    budget: int | None = None  # T
    max_tokens: int = 4096
    first: int | None = None  # where the first probe falls, if not at K (DeepConf's chunk)


@dataclass(frozen=True)
class Trace:
    answer: str | None  # None: cut off without an answer
    thinking: int  # generated tokens of the thought calls
    probing: int  # generated tokens of its probes (their cue is prompt)
    answering: int  # generated tokens of the answer after a close
    probes: int


@dataclass(frozen=True)
class Run:
    correct: bool
    thinking: int
    probing: int
    answering: int

    @property
    def generated(self) -> int:
        return self.thinking + self.probing + self.answering


def trace(spec: TaskSpec, model: Thinking, probing: Probing, rng: np.random.Generator
          ) -> Trace:
    """One sample under the protocol."""
    attempts = int(rng.geometric(model.close_chance))
    insight = rng.geometric(spec.solve_rate) if spec.solve_rate > 0 else math.inf
    natural = OPEN + ATTEMPT * attempts + CLOSE  # its length if it closes by itself
    limit = probing.budget if probing.budget is not None else probing.max_tokens

    def answer_at(tokens: int) -> str:  # the answer of the thought's first tokens
        done = min(attempts, max(0, tokens - OPEN) // ATTEMPT)
        return _answer(spec, done >= insight, rng)

    answers: list[str] = []
    spent = 0  # probe tokens
    # Probes every K tokens (from the first) that the thought reaches before it closes and
    # before its limit.
    every, start = probing.every, probing.first or probing.every
    for at in range(start, min(natural, limit), every) if start and every else range(0):
        answers.append(answer_at(at))
        spent += len(answers[-1]) + 2  # "X}" and the end of the sequence
        last = answers[-probing.agree:]
        if len(last) == probing.agree and len(set(last)) == 1:
            return Trace(last[0], at, spent, 0, len(answers))
    if natural <= limit:
        answer = answer_at(natural)
        return Trace(answer, natural, spent, len(_said(answer)) + 1, len(answers))
    if probing.budget is None:
        return Trace(None, limit, spent, 0, len(answers))
    answer = answer_at(limit)
    return Trace(answer, limit, spent, len(answer) + 2, len(answers))


def _said(answer: str) -> str:
    return f"\n\nThe answer is \\boxed{{{answer}}}."


def _answer(spec: TaskSpec, right: bool, rng: np.random.Generator) -> str:
    if right:
        return spec.answer
    answers = [a for a, _ in spec.wrong]
    return answers[rng.choice(len(answers), p=[w for _, w in spec.wrong])]


def majority(spec: TaskSpec, model: Thinking, probing: Probing, n: int,
             rng: np.random.Generator) -> Run:
    """n samples, the answer most of them give (ties to the one seen first); a sample
    without an answer does not vote."""
    traces = [trace(spec, model, probing, rng) for _ in range(n)]
    votes = _votes(traces)
    chosen = max(votes, key=lambda a: votes[a]) if votes else None
    return Run(chosen == spec.answer, sum(t.thinking for t in traces),
               sum(t.probing for t in traces), sum(t.answering for t in traces))


def deepconf(spec: TaskSpec, model: Thinking, probing: Probing, n: int, warmup: int,
             rng: np.random.Generator, consensus: float = 0.95) -> Run:
    """Online DeepConf where every token has the same confidence (the thinking engine's
    thoughts have no steps to set it by): no trace falls below the threshold, all vote
    alike. Warm-up traces, then batches of as many until, after a batch, the leading
    answer holds `consensus` of the votes, or n traces; ties to the answer seen first."""
    traces = [trace(spec, model, probing, rng) for _ in range(min(warmup, n))]
    while len(traces) < n:
        traces += [trace(spec, model, probing, rng) for _ in range(min(warmup, n - len(traces)))]
        votes = _votes(traces)
        if votes and max(votes.values()) >= consensus * sum(votes.values()):
            break
    votes = _votes(traces)
    chosen = max(votes, key=lambda a: votes[a]) if votes else None
    return Run(chosen == spec.answer, sum(t.thinking for t in traces),
               sum(t.probing for t in traces), sum(t.answering for t in traces))


def _votes(traces: list[Trace]) -> dict[str, int]:
    votes: dict[str, int] = {}
    for t in traces:
        if t.answer is not None:
            votes[t.answer] = votes.get(t.answer, 0) + 1
    return votes
