"""Monte Carlo reference for DeepConf and majority voting on the ground-truth task with its
token-confidence model (lab.ground_truth.confidence), written from the task's and the
algorithm's definitions alone (no code of worker.search).

A trace is sound after step j while every step so far was (each with probability p); its
tokens of step j have confidence `sound` or `unsound`, plus the trace's offset
N(0, spread), floored at 0. With a window no longer than any step, a trace's lowest group
confidence is the level of its last step, and its group confidence after step j (a chunk
ends at each step) is the level of step j. Step j costs the length of its text plus the
separator (2 tokens) or, for the last, the end of the sequence (1)."""

from dataclasses import dataclass

import numpy as np

from lab.ground_truth.confidence import Confidence
from lab.ground_truth.task import TaskSpec, step_text

CONSENSUS = 0.95


@dataclass(frozen=True)
class Run:
    correct: bool
    tokens: int


def _trace(spec: TaskSpec, model: Confidence, rng: np.random.Generator
           ) -> tuple[list[float], list[int], str]:
    """Levels and token counts of each step of one sampled trace, and its answer."""
    sound, levels, tokens = True, [], []
    offset = rng.normal(0.0, model.spread)
    for number in range(1, spec.steps + 1):
        sound = sound and rng.random() < spec.p
        last = number == spec.steps
        answer = (spec.answer if sound else _wrong(spec, rng)) if last else None
        levels.append(max(0.0, (model.sound if sound else model.unsound) + offset))
        tokens.append(len(step_text(number, sound, 0, answer)) + (1 if last else 2))
    return levels, tokens, answer or ""


def _wrong(spec: TaskSpec, rng: np.random.Generator) -> str:
    answers = [a for a, _ in spec.wrong]
    return answers[rng.choice(len(answers), p=[w for _, w in spec.wrong])]


def _vote(votes: list[tuple[str, float]]) -> str | None:
    weight: dict[str, float] = {}
    for answer, w in votes:
        weight[answer] = weight.get(answer, 0.0) + w
    return max(weight, key=lambda a: weight[a]) if weight else None


def _share(votes: list[tuple[str, float]]) -> float:
    total = sum(w for _, w in votes)
    if total <= 0:
        return 0.0
    weight: dict[str, float] = {}
    for answer, w in votes:
        weight[answer] = weight.get(answer, 0.0) + w
    return max(weight.values()) / total


def online(spec: TaskSpec, model: Confidence, n: int, warmup: int, keep: float,
           rng: np.random.Generator) -> Run:
    first = [_trace(spec, model, rng) for _ in range(min(warmup, n))]
    tokens = sum(sum(t) for _, t, _ in first)
    threshold = float(np.percentile([levels[-1] for levels, _, _ in first], 100.0 - keep))
    votes = [(answer, levels[-1]) for levels, _, answer in first if levels[-1] >= threshold]
    started = len(first)
    while started < n:  # batches of warm-up size; the consensus checked after each
        size = min(len(first), n - started)
        started += size
        for _ in range(size):
            levels, counts, answer = _trace(spec, model, rng)
            stop = next((j for j, level in enumerate(levels) if level < threshold), None)
            tokens += sum(counts if stop is None else counts[: stop + 1])
            if stop is None:
                votes.append((answer, levels[-1]))
        if _share(votes) >= CONSENSUS:
            break
    return Run(_vote(votes) == spec.answer, tokens)


def offline(spec: TaskSpec, model: Confidence, n: int, keep: float,
            rng: np.random.Generator) -> Run:
    traces = [_trace(spec, model, rng) for _ in range(n)]
    kept = max(1, int(np.ceil(n * keep / 100)))
    ranked = sorted(traces, key=lambda t: -t[0][-1])[:kept]
    return Run(_vote([(answer, levels[-1]) for levels, _, answer in ranked]) == spec.answer,
               sum(sum(t) for _, t, _ in traces))


def majority(spec: TaskSpec, model: Confidence, n: int, rng: np.random.Generator) -> Run:
    traces = [_trace(spec, model, rng) for _ in range(n)]
    return Run(_vote([(answer, 1.0) for _, _, answer in traces]) == spec.answer,
               sum(sum(t) for _, t, _ in traces))
