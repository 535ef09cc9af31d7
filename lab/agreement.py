"""How closely ttcq's accuracy curves match the ground-truth task's reference values, on
as many problems as you like: every strategy of lab.ground_truth_batches.RUNS is run
through process_job into the database, the report's numbers are read back (the counts
that `ttcq report` and v_accuracy_by_budget give), and each is printed beside its
reference with z = (measured - reference) / sd, sd that of a measurement over the problems.

    .venv/bin/python -m lab.agreement \\
        --db postgresql+psycopg://postgres@127.0.0.1:5432/ttcq_agreement --problems 2000
"""

import argparse
from collections import Counter

from lab.ground_truth.expected import curve
from lab.ground_truth.task import make_dataset
from lab.ground_truth_batches import BUDGETS, RUNS, run_batch
from ttcq.api.datasets import Limits, to_problems
from ttcq.api.embedded import session_factory
from ttcq.api.report.data import build_report
from ttcq.db.batches import get_batch
from ttcq.db.migrate import upgrade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a database URL (migrated first)")
    parser.add_argument("--problems", type=int, default=2000)
    parser.add_argument("--quality", type=float, default=2.0, help="the self-judge's quality")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rows = make_dataset(args.problems, seed=args.seed)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, len(rows))))
    upgrade(args.db)
    sessions = session_factory(args.db)
    levels = Counter(row["level"] for row in rows)
    print("run                 n  measured  reference      sd      z")  # noqa: T201
    for run, config in RUNS.items():
        batch_id = run_batch(sessions, problems, quality=args.quality, seed=args.seed, **config)
        with sessions() as session:
            batch = get_batch(session=session, batch_id=batch_id)
            report = build_report(session=session, batches=[batch] if batch else [])
        measured = {p.budget: p.correct / p.graded for p in report.points if p.level is None}
        expected = curve(config["strategy"], config, BUDGETS[run], args.quality, levels)
        for n, reference in expected.items():
            sd = reference.variance**0.5
            print(f"{run:<18} {n:>2}  {measured[n]:>8.4f}  {reference.accuracy:>9.4f}  "  # noqa: T201
                  f"{sd:>6.4f}  {reference.z(measured[n]):>+5.2f}", flush=True)


if __name__ == "__main__":
    main()
