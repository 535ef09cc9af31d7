"""What many problems in flight give when the server is not the limit: the same Celery
thread-pool worker, Redis and Postgres as bench/saturation.py, but the engine is a TEST
DOUBLE with the shape of a GPU server with spare batch capacity — every call takes a fixed
latency however many sequences it carries (the ground-truth engine behind a sleep). On the
2-core CPU SGLang server the server's compute is the limit; here only ttcq's own
concurrency is, so this is the curve a GPU server far from its batch limit would see.

    .venv/bin/python -m bench.in_flight_latency

Writes bench/results/in_flight_latency.json."""

import json
import time
from collections.abc import Sequence

from celery.contrib.testing.worker import start_worker
from sqlmodel import Session, col, func, select

from bench.common import REDIS_URL, bench_database, save_results
from bench.saturation import wait_done
from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from ttcq.api.datasets import Limits, to_problems
from ttcq.db.batches import create_batch
from ttcq.db.models import StepLabel
from ttcq.db.session import get_engine
from ttcq.settings import Settings
from ttcq.worker.engines.base import Completion, GenerationRequest, TokenLogprobs
from ttcq.worker.main import create_worker_app
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.search.config import make_config

LATENCY_S = 0.2  # per engine or verifier call, whatever its batch
IN_FLIGHT = (1, 4, 16, 64)
PROBLEMS = 128
ONE_AT_A_TIME_PROBLEMS = 16
CONFIG = {"strategy": "beam_search", "n": 8, "beam_width": 4, "verifier": "self_judge"}


class LatencyBoundEngine(GroundTruthEngine):
    """TEST DOUBLE: the ground-truth engine, each call held for LATENCY_S."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        time.sleep(LATENCY_S)
        return super().generate(requests)

    def next_token_logprobs(self, prompts: Sequence[Sequence[int]],
                            token_ids: Sequence[int]) -> list[TokenLogprobs]:
        time.sleep(LATENCY_S)
        return super().next_token_logprobs(prompts, token_ids)


def run(db_url: str, k: int, search: dict[str, object] | None = None) -> dict[str, object]:
    count = ONE_AT_A_TIME_PROBLEMS if k == 1 else PROBLEMS
    rows = make_dataset(count, seed=k)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, count)))
    config = make_config(**{"seed": k, **(search or CONFIG)}).model_dump(mode="json")
    with Session(get_engine(db_url)) as session:
        _, ids = create_batch(session=session, owner="bench", problems=problems, config=config)
    settings = Settings(database_url=db_url, redis_url=REDIS_URL, engine="sglang",
                        engine_url="http://double.invalid",  # never called: the double serves
                        lease_seconds=60, task_time_limit=3000, visibility_timeout=3600)
    engine = LatencyBoundEngine()
    app = create_worker_app(settings, engine_factory=lambda: engine)
    with start_worker(app, perform_ping_check=False, pool="threads", concurrency=k,
                      shutdown_timeout=60):
        start = time.perf_counter()
        enqueue_jobs(app, ids)
        wait_done(db_url, ids)
        seconds = time.perf_counter() - start
    app.close()
    with Session(get_engine(db_url)) as session:
        labels = session.exec(select(func.count()).select_from(StepLabel)
                              .where(col(StepLabel.job_id).in_(ids))).one()
    return {"in_flight": k, "problems": count, "seconds": round(seconds, 1),
            "problems_per_min": round(count / seconds * 60, 1),
            **({"labels_per_min": round(labels / seconds * 60, 1)} if labels else {})}


def main() -> list[dict[str, object]]:
    with bench_database("ttcq_bench_latency") as db_url:
        rows = [run(db_url, k) for k in IN_FLIGHT]
    base = float(rows[0]["problems_per_min"])  # type: ignore[arg-type]
    for row in rows:
        row["speedup_vs_one"] = round(float(row["problems_per_min"]) / base, 2)  # type: ignore[arg-type]
        row["latency_s_per_call"] = LATENCY_S
    save_results("in_flight_latency", rows)
    return rows


if __name__ == "__main__":
    for result in main():
        print(json.dumps(result))
