"""Run the ground-truth task (lab.ground_truth) through ttcq as users' batches run, one
batch per strategy, and print the batch ids: the input of `ttcq report ... --db URL`.

    .venv/bin/python -m lab.report_example --db sqlite:///ground_truth.db > ids
    .venv/bin/ttcq report $(cat ids) --db sqlite:///ground_truth.db -o report/
"""

import argparse
from typing import Any

from lab.ground_truth.task import make_dataset
from lab.ground_truth_batches import run_batch
from ttcq.api.datasets import Limits, to_problems
from ttcq.api.embedded import session_factory
from ttcq.db.migrate import upgrade

VERIFIED = {"verifier": "self_judge"}
BATCHES: list[dict[str, Any]] = [
    {"strategy": "majority", "n": 16, "verifier": "none"},
    {"strategy": "best_of_n", "n": 16, **VERIFIED},
    {"strategy": "weighted_best_of_n", "n": 16, **VERIFIED},
    {"strategy": "dvts", "n": 16, "beam_width": 4, **VERIFIED},
    *({"strategy": "beam_search", "n": n, "beam_width": 4, **VERIFIED} for n in (4, 8, 16)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite:///ground_truth.db")
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--quality", type=float, default=2.0, help="the self-judge's quality")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = make_dataset(args.problems, seed=args.seed)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, len(rows))))
    upgrade(args.db)
    sessions = session_factory(args.db)
    for config in BATCHES:
        batch_id = run_batch(sessions, problems, quality=args.quality, seed=args.seed, **config)
        print(batch_id, flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
