"""Saturation on the real SGLang server (CPU): problems per minute for a fixed batch with
many problems in flight per worker, against one at a time (search-and-learn's way), on
the same server in one run. A real Celery worker with the thread pool, concurrency k, runs
the batch through Redis and Postgres; the server's /metrics is sampled meanwhile for its
running-request count, and the stored costs give cached / prompt tokens.

Strategies: beam search N=8 M=4 and best-of-N N=8 on GSM8K problems, short answers."""

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from celery.contrib.testing.worker import start_worker
from sqlmodel import Session, col, func, select

from bench.common import REDIS_URL, RESULTS, bench_database, save_results
from lab.servers import server_paths, sglang_server
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Job, JobCost, JobState
from ttcq.db.session import get_engine
from ttcq.settings import Settings
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.main import create_worker_app
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.search.config import make_config

ROOT = Path(__file__).parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
IN_FLIGHT = (1, 4, 16, 64)
PROBLEMS = 64
ONE_AT_A_TIME_PROBLEMS = 8  # the slow baseline's rate is read on the batch's first ones
# The server's KV pool must hold what is in flight, or its radix cache evicts the shared
# prefixes between a search's steps: 64 problems x 8 branches x ~250 tokens is ~128k
# tokens. With the tests' 16,384 (the first run of this bench), cached / prompt fell from
# 0.95 at 4 in flight to 0.66 at 16. A GPU server's pool holds hundreds of thousands.
KV_POOL_TOKENS = 131072
SERVER_ARGS = ("--max-total-tokens", str(KV_POOL_TOKENS), "--mem-fraction-static", "0.3")
STRATEGIES: dict[str, dict[str, Any]] = {
    "beam_search": {"n": 8, "beam_width": 4, "max_depth": 2, "max_step_tokens": 24,
                    "max_tokens": 48, "verifier": "checker"},
    "best_of_n": {"n": 8, "max_tokens": 48, "verifier": "checker"},
}


def questions() -> list[str]:
    lines = DATA.read_text(encoding="utf-8").splitlines()[:PROBLEMS]
    return [json.loads(line)["question"] for line in lines]


class MetricsSampler(threading.Thread):
    """Reads sglang:num_running_reqs from the server's /metrics twice a second."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.samples, self.stop = url, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                text = httpx.get(self.url + "/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("sglang:num_running_reqs")]
            if values:
                self.samples.append(sum(values))


def run_batch(db_url: str, server_url: str, engine: SGLangEngine, strategy: str,
              k: int) -> dict[str, object]:
    count = ONE_AT_A_TIME_PROBLEMS if k == 1 else PROBLEMS
    rows = [ProblemIn(line=i + 1, problem=q) for i, q in enumerate(questions()[:count])]
    config = make_config(strategy=strategy, seed=k, **STRATEGIES[strategy]).model_dump()
    with Session(get_engine(db_url)) as session:
        _, ids = create_batch(session=session, owner="bench", problems=rows, config=config)
    settings = Settings(database_url=db_url, redis_url=REDIS_URL, engine="sglang",
                        engine_url=server_url, lease_seconds=60, task_time_limit=3000,
                        visibility_timeout=3600)
    app = create_worker_app(settings, engine_factory=lambda: engine)
    sampler = MetricsSampler(server_url)
    with start_worker(app, perform_ping_check=False, pool="threads", concurrency=k,
                      shutdown_timeout=120):
        start = time.perf_counter()
        sampler.start()
        enqueue_jobs(app, ids)
        wait_done(db_url, ids)
        seconds = time.perf_counter() - start
    sampler.stop.set()
    app.close()
    with Session(get_engine(db_url)) as session:
        costs = session.exec(select(JobCost).where(col(JobCost.job_id).in_(ids))).all()
    prompt, cached = sum(c.prompt_tokens for c in costs), sum(c.cached_tokens for c in costs)
    running = sampler.samples or [0.0]
    return {
        "strategy": strategy, "in_flight": k, "problems": count, "seconds": round(seconds, 1),
        "problems_per_min": round(count / seconds * 60, 2),
        "server_running_max": max(running),
        "server_running_mean": round(statistics.mean(running), 1),
        "cached_over_prompt": round(cached / prompt, 3) if prompt else 0.0,
        "server_kv_pool_tokens": KV_POOL_TOKENS,
    }


def wait_done(db_url: str, ids: list[Any]) -> None:
    while True:
        with Session(get_engine(db_url)) as session:
            left = session.exec(select(func.count()).select_from(Job).where(
                col(Job.id).in_(ids), col(Job.state).in_([JobState.queued, JobState.running]))
            ).one()
        if not left:
            return
        time.sleep(0.5)


def main() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with bench_database("ttcq_bench_saturation") as db_url:
        policy = server_paths()["TTCQ_POLICY_MODEL_DIR"]
        with sglang_server(policy, RESULTS / "logs" / "saturation-sglang.log",
                           extra=SERVER_ARGS) as server:
            engine = SGLangEngine(server.url)
            for strategy in STRATEGIES:
                for k in IN_FLIGHT:
                    rows.append(run_batch(db_url, server.url, engine, strategy, k))
                    print(json.dumps(rows[-1]), flush=True)
            engine.close()
    for row in rows:
        base = next(r for r in rows if r["strategy"] == row["strategy"] and r["in_flight"] == 1)
        row["speedup_vs_one"] = round(float(row["problems_per_min"])  # type: ignore[arg-type]
                                      / float(base["problems_per_min"]), 2)  # type: ignore[arg-type]
    save_results("saturation", rows)
    return rows


if __name__ == "__main__":
    for result in main():
        print(json.dumps(result))
