"""Accuracy and cost of one search configuration over rows of the ground-truth task, by
direct run_search calls on the test doubles (no database): what the adaptive-search
evidence (-m lab.adaptive_search and its tests) compares."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.verifier import GroundTruthVerifier
from ttcq.worker.search.answers import is_correct
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem


@dataclass
class Measured:
    problems: int = 0
    correct: int = 0
    completion_tokens: int = 0  # generated
    prompt_tokens: int = 0  # read by the engine, cached ones included
    verifier_tokens: int = 0
    samples: int = 0  # candidates over all problems
    stopped: int = 0  # searches that stopped early

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems


def measure(rows: Sequence[dict[str, Any]], *, quality: float = 4.0, noisy_steps: int = 0,
            **config: Any) -> Measured:
    """Run the configuration (SearchConfig fields) on every row; the verifier is the
    ground-truth PRM of this quality, passed in directly whatever config names."""
    judge = GroundTruthVerifier(quality, noisy_steps=noisy_steps)
    engine = GroundTruthEngine(judge)
    search = make_config(**config)
    out = Measured()
    for row in rows:
        result = run_search(Problem(row["problem"], row["answer"]), search, engine, judge)
        out.problems += 1
        out.correct += bool(is_correct(row["answer"], result.answer))
        out.completion_tokens += result.generation.completion_tokens
        out.prompt_tokens += result.generation.prompt_tokens
        out.verifier_tokens += result.verification.total_tokens
        out.samples += len(result.candidates)
        out.stopped += any(n.kind == "stop" for n in result.trace.nodes)
    return out


def sd_of_difference(a: Measured, b: Measured) -> float:
    """The sd of a difference of two accuracies over the same number of problems, taken
    as independent: a bound, as paired runs that share their samples vary less."""
    return math.sqrt((a.accuracy * (1 - a.accuracy) + b.accuracy * (1 - b.accuracy))
                     / a.problems)
