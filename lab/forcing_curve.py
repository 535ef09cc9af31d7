"""Budget forcing's accuracy-vs-budget curve on the ground-truth thought model: the real
search (majority over budget-forced samples on GroundTruthEngine, no database) beside
the independent numpy simulation (lab.ground_truth.simulate_forcing), per budget T, for
one sample and a majority of n; a markdown table.

    .venv/bin/python -m lab.forcing_curve --problems 1000
"""

import argparse
from statistics import mean

import numpy as np

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.simulate_forcing import Forcing, Run, majority
from lab.ground_truth.task import make_dataset, specs_of
from lab.ground_truth.thought import Thinking
from ttcq.worker.search.config import make_config
from ttcq.worker.search.strategies import run_base_strategy
from ttcq.worker.search.types import Problem
from ttcq.worker.verifiers.base import NoVerifier

BUDGETS: tuple[int | None, ...] = (64, 128, 256, 512, 1024, 2048, None)
MAX_TOKENS = 8192


def searched(model: Thinking, forcing: Forcing, n: int, problems: int) -> list[Run]:
    engine = GroundTruthEngine(thinking=model)
    config = make_config(strategy="majority", verifier="none", n=n, max_tokens=MAX_TOKENS,
                         think_budget=forcing.budget, think_min=forcing.minimum)
    out = []
    for row in make_dataset(problems, seed=31):
        result = run_base_strategy(Problem(row["problem"], row["answer"]), config, engine,
                                   NoVerifier())
        forced = sum(len(node.text) for node in result.trace.nodes if node.kind == "forced")
        out.append(Run(result.answer == row["answer"], result.thinking_tokens, forced,
                       result.generation.completion_tokens - result.thinking_tokens))
    return out


def simulated(model: Thinking, forcing: Forcing, n: int, problems: int) -> list[Run]:
    rng = np.random.default_rng(32)
    return [majority(spec, model, forcing, n, rng)
            for spec in specs_of(make_dataset(problems, seed=33))]


def row(label: str, measured: list[Run], reference: list[Run], n: int) -> str:
    def per_sample(runs: list[Run], field: str) -> float:
        return mean(getattr(r, field) for r in runs) / n

    accuracy = mean(r.correct for r in measured)
    se = (accuracy * (1 - accuracy) / len(measured)) ** 0.5
    return (f"| {label} | {n} | {accuracy:.3f} ± {se:.3f} | "
            f"{mean(r.correct for r in reference):.3f} | "
            f"{per_sample(measured, 'thinking'):,.0f} ({per_sample(reference, 'thinking'):,.0f})"
            f" | {per_sample(measured, 'forced'):.1f} ({per_sample(reference, 'forced'):.1f})"
            f" | {per_sample(measured, 'answering'):.1f} "
            f"({per_sample(reference, 'answering'):.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--simulated", type=int, default=10000)
    parser.add_argument("--mean-attempts", type=float, default=24.0)
    parser.add_argument("--vote", type=int, default=8, help="n of the majority rows")
    args = parser.parse_args()
    model = Thinking(args.mean_attempts)
    print("| T (M) | n | accuracy, search ± se | simulation | thinking tokens / sample "  # noqa: T201
          "(sim.) | forced | answer |")
    print("|---|---|---|---|---|---|---|")  # noqa: T201
    cases = [(Forcing(t, max_tokens=MAX_TOKENS), 1) for t in BUDGETS]
    cases += [(Forcing(1024, 512, MAX_TOKENS), 1)]
    cases += [(Forcing(t, max_tokens=MAX_TOKENS), args.vote) for t in (64, 256, 1024, None)]
    for forcing, n in cases:
        label = "none" if forcing.budget is None else str(forcing.budget)
        if forcing.minimum is not None:
            label += f" ({forcing.minimum})"
        print(row(label, searched(model, forcing, n, args.problems),  # noqa: T201
                  simulated(model, forcing, n, args.simulated), n))


if __name__ == "__main__":
    main()
