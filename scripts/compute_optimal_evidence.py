"""Does compute_optimal pay on the ground-truth task? Fixed strategies run on both halves
of a make_dataset split; a policy is fitted on the first half's runs for each token
target; compute_optimal runs on the held-out half with it; each row compares it with the
best fixed strategy (budget point) spending no more mean tokens per problem on the same
problems, and with the fixed strategies' frontier when two of them may be mixed
(worker.compute_optimal_evidence says how tokens are counted).

    .venv/bin/python scripts/compute_optimal_evidence.py --db sqlite:////tmp/co.db
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.datasets import Limits, to_problems  # noqa: E402
from api.embedded import session_factory  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from worker.compute_optimal_evidence import evaluate, prepare, spend_batch, wilson  # noqa: E402
from worker.ground_truth.task import make_dataset  # noqa: E402

HEADER = ("| target tok/problem | compute_optimal tok | acc [95% CI] | best fixed at <= tok "
          "| its tok | its acc | difference (paired) | fixed frontier, mixing two | policy |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a database URL (migrated first)")
    parser.add_argument("--problems", type=int, default=400)
    parser.add_argument("--quality", type=float, default=2.0, help="the self-judge's quality")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--targets", default="3000,6000,12000,24000,48000")
    args = parser.parse_args()
    rows = make_dataset(args.problems, seed=args.seed)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, len(rows))))
    upgrade(args.db)
    sessions = session_factory(args.db)
    # Alternate lines: make_dataset cycles through the levels, so both halves mix them alike.
    fit, held_out = problems[0::2], problems[1::2]
    stored, arms = prepare(sessions, fit, held_out, args.quality)
    print("fixed strategies on the held-out half:")  # noqa: T201
    for arm in sorted(arms, key=lambda a: a.mean_tokens):
        print(f"  {arm.name:<24} {arm.mean_tokens:>8.0f} tok  {arm.accuracy:.3f}")  # noqa: T201
    print(HEADER)  # noqa: T201
    print("|---" * 9 + "|")  # noqa: T201
    for target in map(float, args.targets.split(",")):
        c = evaluate(sessions, stored, arms, held_out, target, args.quality)
        low, high = wilson(sum(c.optimal.correct.values()), len(c.optimal.correct))
        bins = "; ".join(f"{b.min_agreement:g}: {b.strategy} {b.n}" for b in c.policy.bins)
        print(f"| {target:.0f} | {c.optimal.mean_tokens:.0f} | {c.optimal.accuracy:.3f} "  # noqa: T201
              f"[{low:.3f}, {high:.3f}] | {c.fixed.name} | {c.fixed.mean_tokens:.0f} | "
              f"{c.fixed.accuracy:.3f} | {c.difference:+.3f} ± {c.stderr:.3f} | "
              f"{c.mixed:.3f} ({c.optimal.accuracy - c.mixed:+.3f}) | {bins} |", flush=True)

    print("\n| batch tokens | per problem | n chosen | tokens spent | spent / budget |")  # noqa: T201
    print("|---|---|---|---|---|")  # noqa: T201
    for target in map(float, args.targets.split(",")):
        total = int(target * len(held_out))
        n, spent = spend_batch(sessions, stored, held_out, total, args.quality, target)
        print(f"| {total} | {target:.0f} | {n} | {spent} | {spent / total:.3f} |",  # noqa: T201
              flush=True)


if __name__ == "__main__":
    main()
