"""Control plane: problems per second through submit → queue → worker → Postgres with an
engine that costs nothing, against a bare Celery no-op task on the same Redis, in one run.

Both sides run a real Celery worker in a subprocess of this script (solo pool, concurrency
1, the Celery settings of worker.celery_app: acks late, prefetch 1, priority queues), each
on its own queue. ttcq's worker is worker.main.create_worker_app (solve task and reaper) on
its model's queue, with ScriptedInstantEngine, a test double that answers every request at
once; the search is majority, N=4, verifier "none", so what is left is ttcq's own cost:
claim, search bookkeeping and answer checking, storing the result. The baseline worker
registers a task that does nothing under the solve task's name, so both sides are enqueued
by the very same worker.queue.enqueue_jobs call. ttcq's problems are submitted the way the
API submits them, minus HTTP: db.batches.create_batch, then enqueue_jobs after the commit.

A round times from just before submitting until the worker finished the round's last task
(the worker's clock, same machine). Rounds alternate ttcq and no-op so that load from
others on the machine hits both alike; a warm-up task on each worker is not counted. The
ttcq worker also times claim, search and store by wrapping them in worker.service, which
adds about a microsecond per call."""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import ModuleType
from typing import Any

import redis
from celery import Celery
from celery.signals import task_postrun, task_prerun
from sqlmodel import Session, func, select

from bench.common import REDIS_URL, bench_database, save_results
from bench.scripted_engine import ScriptedEngine
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Job
from ttcq.db.session import get_engine
from ttcq.settings import Settings
from ttcq.worker import service
from ttcq.worker.celery_app import SOLVE_TASK, make_celery
from ttcq.worker.main import create_worker_app
from ttcq.worker.queue import enqueue_jobs, queue_for
from ttcq.worker.search.config import make_config

ROOT = Path(__file__).parents[1]
PROBLEMS = 500  # per round
ROUNDS = 3
CONFIG = make_config(strategy="majority", n=4, verifier="none", max_tokens=64)
PROBLEM = ("A robe takes 2 bolts of blue fiber and half that much white fiber. "
           "How many bolts in total does it take?")
MODEL = "scripted-instant"  # the batches' model, which names the queue they go to
QUEUES = {"ttcq": queue_for(MODEL), "noop": "bench-noop"}
MARK_KEY = "bench:{mode}:{count}"  # the worker's clock and stage seconds after `count` tasks
START_SECONDS = 60.0  # worker start-up and its warm-up task
ROUND_SECONDS = 300.0  # one round: generous, the point is never to hang
STOP_SECONDS = 30.0
POLL_SECONDS = 0.01
SOLUTION = ["Half", " of", " 2", " is", " 1", ".", "\n\n", "So", " 2", " +", " 1", " =", " 3",
            ".", "\n\n", "The", " answer", " is", " \\boxed{3}", "."]
Mark = dict[str, Any]


class ScriptedInstantEngine(ScriptedEngine):
    """Every sample is the same three-step solution, ending in \\boxed{3} at end of
    sequence, returned at once."""

    def __init__(self) -> None:
        super().__init__(MODEL, SOLUTION, None)


# --- the worker subprocess -------------------------------------------------------------


class StageClock:
    """Seconds this worker process spent per stage, summed since it started."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, module: ModuleType, name: str, stage: str) -> None:
        """Time module.name; callers that look it up at call time (process_job) see it."""
        inner = getattr(module, name)

        @wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        setattr(module, name, timed)


def install_marks(mode: str, client: redis.Redis, round_size: int, clock: StageClock) -> None:
    """After the warm-up task and after each round, publish the time and the stage seconds.
    Counting happens in this process, so the no-op task itself stays empty."""
    started: list[float] = []
    done = 0

    @task_prerun.connect(weak=False)
    def before(**_: object) -> None:
        started.append(time.perf_counter())

    @task_postrun.connect(weak=False)
    def after(**_: object) -> None:
        nonlocal done
        clock.seconds["task"] += time.perf_counter() - started.pop()
        done += 1
        if (done - 1) % round_size == 0:
            mark = {"time": time.time(), "seconds": dict(clock.seconds)}
            client.set(MARK_KEY.format(mode=mode, count=done), json.dumps(mark))


def noop_app(settings: Settings) -> Celery:
    app = make_celery(settings)

    @app.task(name=SOLVE_TASK, shared=False)
    def noop(job_id: str) -> None:
        """The baseline: takes the solve task's message and does nothing."""

    return app


def run_worker(mode: str, database_url: str, redis_url: str, round_size: int) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url)
    clock = StageClock()
    if mode == "ttcq":
        app = create_worker_app(settings, engine_factory=ScriptedInstantEngine)
        for name, stage in (("claim_job", "claim"), ("run_search", "search"),
                            ("store_search_result", "store")):
            clock.wrap(service, name, stage)
    else:
        app = noop_app(settings)
    install_marks(mode, redis.Redis.from_url(redis_url), round_size, clock)
    worker = app.Worker(pool_cls="solo", concurrency=1, queues=[QUEUES[mode]],
                        loglevel="WARNING", without_gossip=True, without_mingle=True)
    worker.start()


# --- the benchmark -------------------------------------------------------------------------


class WorkerProcess:
    """`python -m bench.control_plane --worker MODE`, logging to a temporary file."""

    def __init__(self, mode: str, database_url: str, client: redis.Redis, round_size: int):
        self.mode, self.client = mode, client
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{mode}-", suffix=".log")
        command = [sys.executable, "-m", "bench.control_plane", "--worker", mode,
                   "--database-url", database_url, "--redis-url", REDIS_URL,
                   "--round", str(round_size)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    def wait_mark(self, count: int, timeout: float) -> Mark:
        """The mark the worker publishes after `count` tasks; raises if it died or stalled."""
        deadline = time.monotonic() + timeout
        key = MARK_KEY.format(mode=self.mode, count=count)
        while (raw := self.client.get(key)) is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.mode} worker exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.mode} worker: no mark {count} after {timeout} s\n"
                                   f"{self.log_tail()}")
            time.sleep(POLL_SECONDS)
        mark: Mark = json.loads(raw)
        return mark

    def log_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), killed if it does not stop in time."""
        self.process.terminate()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_SECONDS)
        self.log.close()


@contextmanager
def running_worker(
    mode: str, database_url: str, client: redis.Redis, round_size: int
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(mode, database_url, client, round_size)
    try:
        yield worker
    finally:
        worker.stop()


def submit_problems(database_url: str, producer: Celery, count: int) -> None:
    """What POST /batches does after parsing: store the batch, commit, then enqueue."""
    problems = [ProblemIn(line=i + 1, problem=PROBLEM, gold="3", custom_id=f"p{i + 1}")
                for i in range(count)]
    with Session(get_engine(database_url), expire_on_commit=False) as session:
        _, ids = create_batch(session=session, owner="bench", config=CONFIG.model_dump(),
                              problems=problems, model=MODEL)
    enqueue_jobs(producer, ids, queue=queue_for(MODEL))


def submit_noops(producer: Celery, count: int) -> None:
    enqueue_jobs(producer, [uuid.uuid4() for _ in range(count)], queue=QUEUES["noop"])


def timed_round(worker: WorkerProcess, submit: Callable[[], None], done: int,
                count: int) -> dict[str, Any]:
    """Submit `count` tasks to a worker that has run `done`, and wait until it ran them."""
    before = worker.wait_mark(done, 0)
    start = time.time()
    submit()
    submitted = time.time()
    after = worker.wait_mark(done + count, ROUND_SECONDS)
    stages = {k: v - before["seconds"].get(k, 0.0) for k, v in after["seconds"].items()}
    return {"seconds": after["time"] - start, "submit_seconds": submitted - start,
            "stages": stages}


def per_item_us(rounds: list[dict[str, Any]], count: int) -> dict[str, float]:
    """Microseconds per task in the median round: wall, submit, and each stage."""
    middle = sorted(rounds, key=lambda r: r["seconds"])[len(rounds) // 2]
    us = {"wall": middle["seconds"], "submit": middle["submit_seconds"], **middle["stages"]}
    out = {k: round(1e6 * v / count, 1) for k, v in us.items()}
    stages = sum(out.get(k, 0.0) for k in ("claim", "search", "store"))
    if stages:
        out["task_other"] = round(out["task"] - stages, 1)  # lease thread, config, cost
    out["outside_task"] = round(out["wall"] - out["task"], 1)  # Celery: fetch, ack, dispatch
    return out


def jobs_by_state(database_url: str) -> dict[str, int]:
    with Session(get_engine(database_url)) as session:
        rows = session.exec(select(Job.state, func.count()).group_by(Job.state))
        return dict(rows.all())


def run_rounds(url: str, client: redis.Redis, problems: int, rounds: int) -> dict[str, Any]:
    producer = make_celery(Settings(database_url=url, redis_url=REDIS_URL))
    results: dict[str, list[dict[str, Any]]] = {"ttcq": [], "noop": []}
    try:
        with running_worker("ttcq", url, client, problems) as ttcq, \
                running_worker("noop", url, client, problems) as noop:
            submit_problems(url, producer, 1)
            submit_noops(producer, 1)
            ttcq.wait_mark(1, START_SECONDS)
            noop.wait_mark(1, START_SECONDS)
            for r in range(rounds):
                done = 1 + r * problems
                results["ttcq"].append(timed_round(
                    ttcq, lambda: submit_problems(url, producer, problems), done, problems))
                results["noop"].append(timed_round(
                    noop, lambda: submit_noops(producer, problems), done, problems))
    finally:
        producer.close()
    return results


def summarize(results: dict[str, list[dict[str, Any]]], problems: int,
              states: dict[str, int]) -> dict[str, object]:
    ttcq = [problems / r["seconds"] for r in results["ttcq"]]
    noop = [problems / r["seconds"] for r in results["noop"]]
    ttcq_rate, noop_rate = statistics.median(ttcq), statistics.median(noop)
    return {
        "problems": problems, "rounds": len(ttcq), "strategy": CONFIG.strategy, "n": CONFIG.n,
        "verifier": CONFIG.verifier, "pool": "solo",
        "ttcq_problems_per_s": round(ttcq_rate, 1), "noop_tasks_per_s": round(noop_rate, 1),
        "ttcq_over_noop": round(ttcq_rate / noop_rate, 3),
        "ttcq_rounds_per_s": [round(x, 1) for x in ttcq],
        "noop_rounds_per_s": [round(x, 1) for x in noop],
        "ttcq_us_per_problem": per_item_us(results["ttcq"], problems),
        "noop_us_per_task": per_item_us(results["noop"], problems),
        "job_states": states,
    }


def measure(problems: int = PROBLEMS, rounds: int = ROUNDS) -> dict[str, object]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()  # db 5 is the benchmarks' own: start from empty queues
    try:
        with bench_database("ttcq_bench_cp") as url:
            results = run_rounds(url, client, problems, rounds)
            states = jobs_by_state(url)
    finally:
        client.flushdb()
        client.close()
    # Every problem solved once and stored (warm-up included): otherwise the rate is void.
    if states != {"succeeded": 1 + problems * rounds}:
        raise RuntimeError(f"jobs did not all succeed: {states}")
    return summarize(results, problems, states)


def main() -> list[dict[str, object]]:
    rows = [measure()]
    save_results("control_plane", rows)
    for row in rows:
        print(json.dumps(row))
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description="control plane throughput against a no-op")
    parser.add_argument("--worker", choices=sorted(QUEUES), help="run a worker (internal)")
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--round", type=int, default=PROBLEMS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.database_url, args.redis_url, args.round)
    else:
        main()


if __name__ == "__main__":
    cli()
