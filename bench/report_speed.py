"""Report speed: `ttcq report`'s numbers over thousands of problems, counted by the database
(db.reports: a GROUP BY per source), against two ways of counting them in Python measured
in the same run on the same rows: streaming every job's result record (db.results, as
`ttcq results` does) and fetching every budget-curve row with its level and cost.

The rows are synthetic but shaped as real runs store them: three batches of PROBLEMS
problems with MATH-style levels (majority and best-of-N at N=16, five curve points per
job; beam search at N=4, one), a job_cost row per job. Median of REPEATS, alternating."""

import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text, update
from sqlmodel import Session, col

from bench.common import bench_database, save_results
from ttcq.api.report.data import build_report
from ttcq.api.report.draw import draw
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.bulk import insert_ignoring_conflicts
from ttcq.db.models import Batch, BudgetPoint, Job, JobCost, JobCostBase, JobState
from ttcq.db.results import batch_results
from ttcq.db.session import get_engine
from ttcq.worker.search.config import make_config

PROBLEMS = 5000
REPEATS = 5
CONFIGS = [{"strategy": "majority", "n": 16, "verifier": "none"},
           {"strategy": "best_of_n", "n": 16}, {"strategy": "beam_search", "n": 4}]


def _budgets(n: int, strategy: str) -> list[int]:
    return [n] if strategy == "beam_search" else [1, 2, 4, 8, 16][: n.bit_length()]


def _store_batch(session: Session, config: dict[str, Any], rng: random.Random) -> Batch:
    problems = [ProblemIn(line=i + 1, problem=f"problem {i}", gold="1",
                          meta={"level": 1 + i % 5}) for i in range(PROBLEMS)]
    full = make_config(**config).model_dump(mode="json")
    batch, job_ids = create_batch(session=session, owner="bench", config=full, problems=problems)
    session.exec(update(Job).where(col(Job.batch_id) == batch.id)
                 .values(state=JobState.succeeded, correct=True))
    points = [{"job_id": j, "n": n, "candidate_idx": 0, "answer": "1",
               "correct": rng.random() < 0.5}
              for j in job_ids for n in _budgets(config["n"], config["strategy"])]
    cost = JobCostBase(prompt_tokens=300, cached_tokens=200, completion_tokens=900,
                       verifier_tokens=400, engine_calls=4, flops=1e11).model_dump()
    costs = [{"job_id": j, **cost} for j in job_ids]
    insert_ignoring_conflicts(session, BudgetPoint.__table__, points)  # type: ignore[attr-defined]
    insert_ignoring_conflicts(session, JobCost.__table__, costs)  # type: ignore[attr-defined]
    session.commit()
    return batch


def _by_database(session: Session, batches: list[Batch]) -> int:
    return len(build_report(session=session, batches=batches).points)


def _by_result_records(session: Session, batches: list[Batch]) -> int:
    counts: Counter[tuple[Any, ...]] = Counter()
    for batch in batches:
        for record in batch_results(session=session, batch_id=batch.id, config=batch.config):
            level = record["meta"].get("level")
            for point in record["budget_curve"]:
                counts[batch.id, level, point["n"], bool(point["correct"])] += 1
    return len(counts)


def _by_fetched_rows(session: Session, batches: list[Batch]) -> int:
    rows = session.exec(text(  # type: ignore[call-overload]
        "SELECT j.batch_id, j.meta, p.n, p.correct, c.prompt_tokens + c.completion_tokens "
        "FROM budget_point p JOIN job j ON j.id = p.job_id JOIN job_cost c ON c.job_id = j.id "
        "WHERE j.batch_id = ANY(:ids)"), params={"ids": [b.id for b in batches]})
    counts: Counter[tuple[Any, ...]] = Counter()
    for batch_id, meta, n, correct, _ in rows:
        counts[batch_id, meta.get("level"), n, correct] += 1
    return len(counts)


def _seconds(fn: Callable[[Session, list[Batch]], int], url: str, batches: list[Batch]
             ) -> float:
    with Session(get_engine(url)) as session:  # a fresh session: nothing cached in it
        started = time.perf_counter()
        fn(session, batches)
        return time.perf_counter() - started


def main() -> dict[str, Any]:
    rng = random.Random(0)
    with bench_database("ttcq_bench_report") as url:
        with Session(get_engine(url), expire_on_commit=False) as session:
            batches = [_store_batch(session, config, rng) for config in CONFIGS]
        ways = {"database": _by_database, "result_records": _by_result_records,
                "fetched_rows": _by_fetched_rows}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for fn in ways.values():  # a warm-up round, not counted
            _seconds(fn, url, batches)
        for _ in range(REPEATS):
            for name, fn in ways.items():
                times[name].append(_seconds(fn, url, batches))
        with Session(get_engine(url)) as session:
            report = build_report(session=session, batches=batches)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        draw(report, Path(out))
    drawing = time.perf_counter() - started
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "problems": PROBLEMS * len(CONFIGS), "budget_points": sum(
            PROBLEMS * len(_budgets(c["n"], c["strategy"])) for c in CONFIGS),
        "repeats": REPEATS, "report_data_s": round(median["database"], 3),
        "result_records_s": round(median["result_records"], 3),
        "fetched_rows_s": round(median["fetched_rows"], 3),
        "database_over_result_records": round(median["database"] / median["result_records"], 3),
        "database_over_fetched_rows": round(median["database"] / median["fetched_rows"], 3),
        "draw_s": round(drawing, 2),
    }
    save_results("report_speed", [result])
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
