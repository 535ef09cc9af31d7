"""Evidence for mcts on the ground-truth task (direct run_search calls on the test doubles,
no database): MCTS against one sample, best-of-N and beam search at about equal generated
tokens (16 simulations of M=4 steps generate at most the 64 steps of N=16 solutions),
each accuracy with its 95% Wilson interval.

    .venv/bin/python -m lab.mcts_evidence --problems 600
"""

import argparse
import math
import time
from typing import Any

from lab.ground_truth.measure import Measured, measure
from lab.ground_truth.task import make_dataset

JUDGE: dict[str, Any] = {"verifier": "prm", "aggregation": "last", "quality": 4.0}
MCTS: dict[str, Any] = {"strategy": "mcts", "beam_width": 4, "mcts_simulations": 16}
RUNS: dict[str, dict[str, Any]] = {
    "one sample": {"strategy": "best_of_n", "n": 1},
    "best_of_n N=16": {"strategy": "best_of_n", "n": 16},
    "beam_search N=16 M=4": {"strategy": "beam_search", "n": 16, "beam_width": 4},
    "mcts S=16 M=4 c=1": MCTS,
    "mcts S=16 M=4 c=0": {**MCTS, "c_puct": 0.0},
    # A rollout to the answer costs the rest of a solution: 5 simulations cost about
    # as much as the others' 16.
    "mcts rollout S=5 M=4 c=1": {**MCTS, "mcts_simulations": 5, "mcts_value": "rollout"},
}


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sound at 0 and 1 too)."""
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def line(name: str, m: Measured, seconds: float) -> str:
    low, high = wilson(m.correct, m.problems)
    return (f"{name:26s} acc {m.accuracy:.3f} [{low:.3f}, {high:.3f}]  "
            f"generated/problem {m.completion_tokens / m.problems:5.0f}  "
            f"candidates/problem {m.samples / m.problems:5.1f}  ({seconds:.1f} s)")


def run_all(rows: list[dict[str, Any]]) -> dict[str, Measured]:
    out = {}
    for name, config in RUNS.items():
        start = time.perf_counter()
        out[name] = measure(rows, **JUDGE, **config)
        print(line(name, out[name], time.perf_counter() - start))  # noqa: T201
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=600)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.problems} problems, seed {args.seed}, {JUDGE}")  # noqa: T201
    run_all(make_dataset(args.problems, seed=args.seed))


if __name__ == "__main__":
    main()
