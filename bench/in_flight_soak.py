"""Soak with many problems in flight: two thread-pool worker processes (`python -m
worker.main`, 32 searches each) solve a batch on the real SGLang server while one of them,
chosen at random, is SIGKILLed every few seconds and started again. At the end every job
must have succeeded exactly once: one cost row, its candidates stored once, no job lost.

    .venv/bin/python bench/in_flight_soak.py [--problems 128] [--kill-every 15]

Writes bench/results/in_flight_soak.json."""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from bench_db import REDIS_URL, bench_database  # noqa: E402
from sqlalchemy import func  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from db.batches import ProblemIn, create_batch  # noqa: E402
from db.models import Candidate, Job, JobCost, JobState  # noqa: E402
from db.session import get_engine  # noqa: E402
from tests.utils.servers import server_paths, sglang_server  # noqa: E402
from ttcq.settings import Settings  # noqa: E402
from worker.celery_app import make_celery  # noqa: E402
from worker.queue import enqueue_jobs  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CONFIG = {"strategy": "best_of_n", "verifier": "checker", "n": 2, "max_tokens": 32}
IN_FLIGHT = 32


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.main", "--concurrency", str(IN_FLIGHT)], cwd=ROOT,
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def counts(db_url: str, ids: list[Any]) -> dict[str, int]:
    with Session(get_engine(db_url)) as session:
        rows = session.exec(select(Job.state, func.count()).where(
            col(Job.id).in_(ids)).group_by(Job.state)).all()
    return {str(state): int(n) for state, n in rows}


def soak(db_url: str, server_url: str, problems: int, kill_every: float) -> dict[str, Any]:
    rows = [ProblemIn(line=i + 1, problem=f"What is {i + 12} + {3 * i + 7}?", gold=str(4 * i + 19))
            for i in range(problems)]
    with Session(get_engine(db_url)) as session:
        _, ids = create_batch(session=session, owner="bench", problems=rows, config=CONFIG)
    env = {**os.environ, "TTCQ_DATABASE_URL": db_url, "TTCQ_REDIS_URL": REDIS_URL,
           "TTCQ_ENGINE": "sglang", "TTCQ_ENGINE_URL": server_url, "TTCQ_LEASE_SECONDS": "5",
           "TTCQ_REAPER_INTERVAL_SECONDS": "1", "TTCQ_TASK_TIME_LIMIT": "300",
           "TTCQ_VISIBILITY_TIMEOUT": "600",
           # Every kill takes all of a worker's searches: a job may be hit many times, and
           # what is tested is that it is never lost or stored twice, not the attempt limit.
           "TTCQ_MAX_ATTEMPTS": "50"}
    app = make_celery(Settings(database_url=db_url, redis_url=REDIS_URL))
    app.connection_for_write().default_channel.client.flushdb()  # the bench's own Redis db
    enqueue_jobs(app, ids)
    app.close()
    log = RESULTS / "logs" / "in_flight_soak_workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    rng = random.Random(7)
    workers = [start_worker(env, log), start_worker(env, log)]
    kills, running_at_kill, start = 0, [], time.monotonic()
    try:
        while counts(db_url, ids).get(JobState.succeeded.value, 0) < problems:
            if time.monotonic() - start > 3000:
                raise RuntimeError(f"soak did not finish: {counts(db_url, ids)}")
            time.sleep(kill_every)
            done = counts(db_url, ids).get(JobState.succeeded.value, 0)
            if done >= problems * 0.9:
                continue  # let the tail finish; the reaper still has leases to reclaim
            victim = rng.randrange(len(workers))
            running_at_kill.append(counts(db_url, ids).get(JobState.running.value, 0))
            os.killpg(workers[victim].pid, signal.SIGKILL)
            workers[victim].wait()
            kills += 1
            workers[victim] = start_worker(env, log)
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    seconds = time.monotonic() - start
    with Session(get_engine(db_url)) as session:
        cost_rows = session.exec(select(func.count()).select_from(JobCost).where(
            col(JobCost.job_id).in_(ids))).one()
        candidates = session.exec(select(func.count()).select_from(Candidate).where(
            col(Candidate.job_id).in_(ids))).one()
        attempts = session.exec(select(Job.attempts, func.count()).where(
            col(Job.id).in_(ids)).group_by(Job.attempts)).all()
    return {
        "problems": problems, "in_flight_per_worker": IN_FLIGHT, "workers": 2,
        "kills": kills, "jobs_running_at_kills": running_at_kill,
        "seconds": round(seconds, 1), "states": counts(db_url, ids),
        "cost_rows": int(cost_rows), "candidates": int(candidates),
        "expected_candidates": problems * int(CONFIG["n"]),  # type: ignore[call-overload]
        "jobs_by_attempts": {int(a): int(n) for a, n in attempts},
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--kill-every", type=float, default=15.0)
    args = parser.parse_args()
    with bench_database("ttcq_bench_soak") as db_url:
        policy = server_paths()["TTCQ_POLICY_MODEL_DIR"]
        with sglang_server(policy, RESULTS / "logs" / "soak-sglang.log") as server:
            result = soak(db_url, server.url, args.problems, args.kill_every)
    result["nothing_lost_or_duplicated"] = (
        result["states"] == {JobState.succeeded.value: result["problems"]}
        and result["cost_rows"] == result["problems"]
        and result["candidates"] == result["expected_candidates"])
    (RESULTS / "in_flight_soak.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
