"""Does compute_optimal pay on the ground-truth task? Fixed strategies run on both halves
of a make_dataset split; a policy is fitted on the first half's runs for each token
target; compute_optimal runs on the held-out half with it; each row compares it with the
fixed strategy a user would have planned from the first half for that target, with the
best fixed strategy in hindsight (the held-out half's best spending no more mean tokens),
and with the fixed strategies' frontier when two of them may be mixed
(lab.compute_optimal_evidence says how tokens are counted and picked).

    .venv/bin/python -m lab.compute_optimal --db sqlite:////tmp/co.db
"""

import argparse
from typing import Any

from lab.compute_optimal_evidence import (
    evaluate,
    known_difficulty,
    prepare,
    spend_batch,
    wilson,
)
from lab.ground_truth.task import LEVELS, make_dataset
from ttcq.api.datasets import Limits, to_problems
from ttcq.api.embedded import session_factory
from ttcq.db.migrate import upgrade

HEADER = ("| target tok/problem | compute_optimal tok | acc [95% CI] | planned fixed | its tok "
          "| its acc | difference (paired) | hindsight fixed at <= tok | its tok | its acc "
          "| difference (paired) | fixed frontier, mixing two | known difficulty, no probe "
          "| probe | policy |")


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
    prepared = prepare(sessions, fit, held_out, args.quality)
    fit_accuracy = {a.name: a.accuracy for a in prepared.fit_arms}
    print("fixed strategies (tokens per problem on the held-out half):")  # noqa: T201
    for arm in sorted(prepared.held_arms, key=lambda a: a.mean_tokens):
        print(f"  {arm.name:<24} {arm.mean_tokens:>8.0f} tok  "  # noqa: T201
              f"fit half {fit_accuracy[arm.name]:.3f}  held-out {arm.accuracy:.3f}")
    print(HEADER)  # noqa: T201
    print("|---" * 15 + "|")  # noqa: T201
    for target in map(float, args.targets.split(",")):
        c = evaluate(sessions, prepared, held_out, target, args.quality)
        low, high = wilson(sum(c.optimal.correct.values()), len(c.optimal.correct))
        policy = c.policy
        probe = "none" if policy.probe == 0 else f"{policy.difficulty} of {policy.probe}"
        bins = "; ".join(f"{b.min_confidence:.2f}: {b.strategy} {b.n}" for b in policy.bins)
        known, known_tokens = known_difficulty(prepared, target)
        print(f"| {target:.0f} | {c.optimal.mean_tokens:.0f} | {c.optimal.accuracy:.3f} "  # noqa: T201
              f"[{low:.3f}, {high:.3f}] | {c.planned.name} | {c.planned.mean_tokens:.0f} | "
              f"{c.planned.accuracy:.3f} | {c.planned_difference:+.3f} ± {c.planned_stderr:.3f} "
              f"| {c.fixed.name} | {c.fixed.mean_tokens:.0f} | "
              f"{c.fixed.accuracy:.3f} | {c.difference:+.3f} ± {c.stderr:.3f} | "
              f"{c.mixed:.3f} ({c.optimal.accuracy - c.mixed:+.3f}) | {known:.3f} at "
              f"{known_tokens:.0f} | {probe} | {bins} |",
              flush=True)

    # The batch budget on the held-out half, and on problems unlike those the policy was
    # fitted on (only the hardest two levels, only the easiest two).
    hard, easy = shifted(args, (4, 5)), shifted(args, (1, 2))
    print("\n| problems | batch tokens | per problem | n chosen | spent at n alone | / budget "  # noqa: T201
          "| accuracy | spent with the ledger | / budget | accuracy |")
    print("|---" * 10 + "|")  # noqa: T201
    for label, group in (("held-out half", held_out), ("levels 4-5 only", hard),
                         ("levels 1-2 only", easy)):
        for target in map(float, args.targets.split(",")):
            total = int(target * len(group))
            s = spend_batch(sessions, prepared, group, total, args.quality, target)
            (alone, alone_acc), (ledger, ledger_acc) = s.planned_only, s.ledger
            print(f"| {label} | {total} | {target:.0f} | {s.n} | {alone} | "  # noqa: T201
                  f"{alone / total:.3f} | {alone_acc:.3f} | {ledger} | {ledger / total:.3f} | "
                  f"{ledger_acc:.3f} |", flush=True)


def shifted(args: argparse.Namespace, levels: tuple[int, ...]) -> list[Any]:
    """New problems (another seed) of only these levels, as many as in a half."""
    rows = make_dataset(args.problems // 2, {lv: LEVELS[lv] for lv in levels},
                        seed=args.seed + 1000 + levels[0])
    return list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, len(rows))))


if __name__ == "__main__":
    main()
