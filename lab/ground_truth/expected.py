"""Expected accuracies over datasets of the ground-truth task (task.make_dataset's levels):
per level from the exact formulas (reference) or the simulators (simulate), then mixed as
the dataset mixes its levels, with the variance that an accuracy measured over these
problems has around them."""

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.ground_truth import reference, simulate
from lab.ground_truth.task import LEVELS, TaskSpec, make_spec

SIMULATED_SEARCHES = 40_000  # per level: the reference's own error is far below the test's
SIMULATED = ("beam_search", "dvts", "lookahead", "particle_filtering", "rebase")


@dataclass(frozen=True)
class Expected:
    accuracy: float
    variance: float  # of the accuracy measured over the dataset's problems

    def z(self, measured: float) -> float:
        return (measured - self.accuracy) / math.sqrt(self.variance)


def level_specs() -> dict[int, TaskSpec]:
    """One task per level: the answers differ between problems, the statistics do not."""
    rng = random.Random(0)
    return {number: make_spec(f"reference-{number}", level, rng)
            for number, level in LEVELS.items()}


def mix(per_level: dict[int, float], levels: Counter[int], extra_variance: float = 0.0
        ) -> Expected:
    """The dataset's expected accuracy and the (Poisson-binomial) variance of its mean."""
    total = sum(levels.values())
    mean = sum(levels[k] * per_level[k] for k in levels) / total
    spread = sum(levels[k] * per_level[k] * (1 - per_level[k]) for k in levels) / total**2
    return Expected(mean, spread + extra_variance)


def curve(strategy: str, config: dict[str, Any], budgets: list[int], quality: float,
          levels: Counter[int], noisy_steps: int = 0) -> dict[int, Expected]:
    """Expected accuracy of a strategy at each budget over a dataset of these levels
    (noisy_steps: the judge's first steps are a coin; simulated strategies only)."""
    specs = level_specs()
    aggregation = config.get("aggregation", "min")
    simulated = strategy in SIMULATED
    if noisy_steps and not simulated:
        raise ValueError(f"no reference for {strategy} with noisy_steps")
    per_level = {k: _per_level(strategy, config, budgets, quality, aggregation, spec, k,
                               noisy_steps) for k, spec in specs.items()}
    out = {}
    for n in budgets:
        values = {k: per_level[k][n] for k in specs}
        # A simulated reference has an error of its own, its variance across levels.
        extra = (sum(levels[k] ** 2 * v * (1 - v) / SIMULATED_SEARCHES for k, v in values.items())
                 / sum(levels.values()) ** 2) if simulated else 0.0
        out[n] = mix(values, levels, extra)
    return out


def _per_level(strategy: str, config: dict[str, Any], budgets: list[int], quality: float,
               aggregation: str, spec: TaskSpec, seed: int, noisy_steps: int = 0,
               ) -> dict[int, float]:
    exact: dict[str, Callable[[int], float]] = {
        "majority": lambda n: reference.majority_accuracy(spec, n),
        "best_of_n": lambda n: reference.best_of_n_accuracy(spec, quality, aggregation, n),
        "weighted_best_of_n":
            lambda n: reference.weighted_best_of_n_accuracy(spec, quality, aggregation, n),
        # Each revision is a fresh sample of the model (its review says nothing), judged on
        # its own steps, and the best-scored attempt wins: best-of-(rounds + 1).
        "self_refine": lambda n: reference.best_of_n_accuracy(spec, quality, aggregation, n),
    }
    if strategy in exact:
        return {n: exact[strategy](n) for n in budgets}
    model = simulate.Model(spec, quality, aggregation, np.random.default_rng(seed),
                           noisy_steps)
    if strategy == "particle_filtering":  # one round: the budget is its n particles
        if config.get("pf_rounds", 1) != 1:
            raise ValueError("the particle-filtering reference is of one round (pf_rounds 1)")
        return {n: simulate.particle_filtering(model, n, config.get("pf_temperature", 0.2),
                                               SIMULATED_SEARCHES) for n in budgets}
    if strategy == "rebase":
        return {n: simulate.rebase(model, n, config.get("rebase_temperature", 0.2),
                                   SIMULATED_SEARCHES) for n in budgets}
    width = config["beam_width"]
    if strategy == "dvts":
        return simulate.dvts(model, config["n"], width, SIMULATED_SEARCHES)
    lookahead = config.get("lookahead", 1 if strategy == "lookahead" else 0)
    return {n: simulate.beam_search(model, n, width, SIMULATED_SEARCHES, lookahead)
            for n in budgets}
