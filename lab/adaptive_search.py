"""Evidence for the adaptive searches on the ground-truth task (direct run_search calls on
the test doubles, no database):

(a) early stopping: majority (and weighted best-of-N) at n=16 with and without
    early_stop, tokens and accuracy over the same problems;
(b) particle filtering against beam search (and REBASE, best-of-N) at equal n=16, where
    the verifier's first steps are a coin (noisy_steps=3 of 4) and where they are not.

    .venv/bin/python -m lab.adaptive_search --problems 600
"""

import argparse
import time
from typing import Any

from lab.ground_truth.measure import Measured, measure, sd_of_difference
from lab.ground_truth.task import make_dataset

ROUNDS = {"early_stop_round": 4, "early_stop_min": 4}
# (config, its early-stop share): weighted best-of-N's share is of the score sum.
SAMPLING: dict[str, tuple[dict[str, Any], float]] = {
    "majority": ({"strategy": "majority", "n": 16, "verifier": "none"}, 0.75),
    "weighted_best_of_n": ({"strategy": "weighted_best_of_n", "n": 16, "verifier": "prm",
                            "aggregation": "last"}, 0.85),
}
TREE: dict[str, dict[str, Any]] = {
    "beam_search M=4": {"strategy": "beam_search", "beam_width": 4},
    "particle_filtering T=0.2": {"strategy": "particle_filtering"},
    "particle_filtering T=1": {"strategy": "particle_filtering", "pf_temperature": 1.0},
    "rebase T=0.2": {"strategy": "rebase"},
    "best_of_n": {"strategy": "best_of_n"},
}


def line(name: str, m: Measured, seconds: float) -> str:
    tokens = (m.completion_tokens + m.prompt_tokens + m.verifier_tokens) / m.problems
    return (f"{name:34s} acc {m.accuracy:.3f}  tokens/problem {tokens:8.0f}  "
            f"generated/problem {m.completion_tokens / m.problems:6.0f}  "
            f"samples/problem {m.samples / m.problems:5.2f}  stopped {m.stopped:4d}  "
            f"({seconds:.0f} s)")


def timed(rows: list[dict[str, Any]], **kwargs: Any) -> tuple[Measured, float]:
    start = time.perf_counter()
    return measure(rows, **kwargs), time.perf_counter() - start


def early_stopping(rows: list[dict[str, Any]], quality: float) -> None:
    print(f"(a) early stopping {ROUNDS}, {len(rows)} problems, q={quality:g}")  # noqa: T201
    for name, (config, share) in SAMPLING.items():
        full, t_full = timed(rows, quality=quality, **config)
        early, t_early = timed(rows, quality=quality, **config, early_stop=share, **ROUNDS)
        saved = 1 - early.completion_tokens / full.completion_tokens
        diff = early.accuracy - full.accuracy
        print(line(name, full, t_full))  # noqa: T201
        print(line(f"{name} +early_stop {share:g}", early, t_early))  # noqa: T201
        print(f"  generated tokens saved {saved:.1%}, accuracy difference {diff:+.3f} "  # noqa: T201
              f"(2 sd = {2 * sd_of_difference(full, early):.3f})")


def noisy_verifier(rows: list[dict[str, Any]], quality: float) -> None:
    for noisy in (3, 0):
        print(f"(b) n=16, aggregation last, q={quality:g}, noisy_steps={noisy} "  # noqa: T201
              f"(first {noisy} steps judged by a coin), {len(rows)} problems")
        for name, config in TREE.items():
            m, seconds = timed(rows, quality=quality, noisy_steps=noisy, n=16, verifier="prm",
                               aggregation="last", **config)
            print(line(name, m, seconds))  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=600)
    parser.add_argument("--quality", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rows = make_dataset(args.problems, seed=args.seed)
    early_stopping(rows, args.quality)
    noisy_verifier(rows, args.quality)


if __name__ == "__main__":
    main()
