"""Preemption soak: two thread-pool workers with 32 searches in flight each solve a batch
while one of them, at random, is SIGKILLed every 15 s (no notice: an OOM, a lost node)
and one is SIGTERMed every 40 s (a spot notice: it drains), each started again at once,
with the default max attempts. Every job must succeed exactly once (a --poison job must
fail, alone, with its reason). Measured: tokens the engine processed again because of
the interruptions ÷ the batch's tokens, and the time from a SIGTERM until the jobs the
drained worker held run elsewhere.

    .venv/bin/python -m bench.in_flight_soak --engine double [--poison]   # latency-bound double
    .venv/bin/python -m bench.in_flight_soak --engine sglang               # real SGLang, CPU
    .venv/bin/python -m bench.in_flight_soak --server-restart              # SGLang down 60 s

The double is lab/double_worker.py (a TEST DOUBLE: the ground-truth engine held
0.2 s per call, as a GPU server with spare batch capacity). Results are merged into
bench/results/in_flight_soak.json under the scenario's name."""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func
from sqlmodel import Session, col, select

from bench.common import REDIS_URL, RESULTS, bench_database
from lab.double_worker import POISON
from lab.ground_truth.task import make_dataset
from lab.servers import RunningServer, server_paths, sglang_server
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Job, JobAttempt, JobCost, JobState
from ttcq.db.session import get_engine
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.search.config import make_config

ROOT = Path(__file__).parents[1]
LOGS = RESULTS / "logs"
IN_FLIGHT = 32
CONFIGS = {  # searches of several steps, so that checkpoints matter
    "double": {"strategy": "beam_search", "n": 8, "beam_width": 4, "verifier": "self_judge"},
    # Steps short enough for the 2-core CPU server to finish a search's first one within
    # a worker's life (one of two killed every 15 s): about 6 s with 64 searches at once.
    "sglang": {"strategy": "beam_search", "n": 2, "beam_width": 2, "verifier": "checker",
               "max_tokens": 64, "max_step_tokens": 16},
}


LEDGER = LOGS / "soak_double_tokens.txt"  # the double's count of processed tokens


def start_worker(env: dict[str, str], engine: str, log: Path) -> subprocess.Popen[bytes]:
    module = (["-m", "lab.double_worker", "--latency", "0.2", "--ledger", str(LEDGER)]
              if engine == "double" else ["-m", "ttcq.worker.main"])
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, *module, "--concurrency", str(IN_FLIGHT)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def make_jobs(db_url: str, engine: str, problems: int, poison: bool) -> list[uuid.UUID]:
    if engine == "double":
        data = make_dataset(problems, seed=1)
        rows = [ProblemIn(i + 1, r["problem"], r["answer"]) for i, r in enumerate(data)]
    else:
        rows = [ProblemIn(i + 1, f"What is {i + 12} + {3 * i + 7}?", str(4 * i + 19))
                for i in range(problems)]
    if poison:
        rows[len(rows) // 3] = ProblemIn(len(rows) // 3 + 1, f"{POISON}: crashes its worker")
    with Session(get_engine(db_url)) as session:
        _, ids = create_batch(session=session, owner="bench", problems=rows,
                              config=make_config(**CONFIGS[engine]).model_dump())
    app = make_celery(Settings(database_url=db_url, redis_url=REDIS_URL))
    app.connection_for_write().default_channel.client.flushdb()  # the bench's own Redis db
    enqueue_jobs(app, ids)
    app.close()
    return ids


def states(db_url: str) -> dict[str, int]:
    with Session(get_engine(db_url)) as session:
        rows = session.exec(select(Job.state, func.count()).group_by(Job.state)).all()
    return {str(state): int(n) for state, n in rows}


def running_on(db_url: str, pid: int) -> set[uuid.UUID]:
    with Session(get_engine(db_url)) as session:
        rows = session.exec(select(Job.id).where(Job.state == JobState.running,
                                                 col(Job.worker).like(f"ttcq{pid}@%"))).all()
    return set(rows)


def moved_on(db_url: str, ids: set[uuid.UUID], pid: int) -> bool:
    """Every one of ids is final, or running on a worker other than pid's."""
    with Session(get_engine(db_url)) as session:
        rows = session.exec(select(Job.state, Job.worker).where(col(Job.id).in_(ids))).all()
    return all(state in ("succeeded", "failed") or
               (state == "running" and not (worker or "").startswith(f"ttcq{pid}@"))
               for state, worker in rows)


class Chaos:
    """Two workers; SIGKILL one every kill_every s, SIGTERM one every term_every s; a
    worker that dies on its own (the poison) is started again. For each SIGTERM, the
    seconds until the worker exited and until every job it held runs elsewhere."""

    def __init__(self, env: dict[str, str], engine: str, db_url: str):
        self.env, self.engine, self.db_url = env, engine, db_url
        self.log = LOGS / f"soak_{engine}_workers.log"
        self.log.write_bytes(b"")
        self.workers = [start_worker(env, engine, self.log) for _ in range(2)]
        self.rng = random.Random(7)
        self.kills = self.terms = self.crashes = 0
        self.moved_seconds: list[float] = []
        self.exit_seconds: list[float] = []
        self.draining: list[tuple[float, int, set[uuid.UUID]]] = []  # when, pid, held jobs

    def restart_dead(self) -> None:
        for i, worker in enumerate(self.workers):
            if worker.poll() is not None:
                self.crashes += 1
                self.workers[i] = start_worker(self.env, self.engine, self.log)

    def kill(self) -> None:
        i = self.rng.randrange(2)
        os.killpg(self.workers[i].pid, signal.SIGKILL)
        self.workers[i].wait()
        self.kills += 1
        self.workers[i] = start_worker(self.env, self.engine, self.log)

    def term(self) -> None:
        i = self.rng.randrange(2)
        victim = self.workers[i]
        held = running_on(self.db_url, victim.pid)
        start = time.monotonic()
        os.kill(victim.pid, signal.SIGTERM)
        victim.wait(timeout=300)
        self.exit_seconds.append(round(time.monotonic() - start, 2))
        self.workers[i] = start_worker(self.env, self.engine, self.log)
        self.draining.append((start, victim.pid, held))
        self.terms += 1

    def follow_drains(self) -> None:
        for entry in list(self.draining):
            start, pid, held = entry
            if moved_on(self.db_url, held, pid):
                self.moved_seconds.append(round(time.monotonic() - start, 2))
                self.draining.remove(entry)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def soak(db_url: str, engine: str, env: dict[str, str], ids: list[uuid.UUID],
         kill_every: float, term_every: float) -> dict[str, Any]:
    chaos = Chaos(env, engine, db_url)
    start = time.monotonic()
    next_kill, next_term = start + kill_every, start + term_every
    try:
        while sum(states(db_url).get(s, 0) for s in ("succeeded", "failed")) < len(ids):
            if time.monotonic() - start > 3600:
                raise RuntimeError(f"soak did not finish: {states(db_url)}")
            chaos.restart_dead()
            chaos.follow_drains()
            if states(db_url).get("succeeded", 0) < 0.9 * len(ids):  # let the tail finish
                if time.monotonic() > next_kill:
                    chaos.kill()
                    next_kill += kill_every
                if time.monotonic() > next_term:
                    chaos.term()
                    next_term += term_every
            time.sleep(0.2)
    finally:
        chaos.stop()
    return {"seconds": round(time.monotonic() - start, 1), "sigkills": chaos.kills,
            "sigterms": chaos.terms, "crashes": chaos.crashes,
            "sigterm_to_exit_s": chaos.exit_seconds,
            "sigterm_to_jobs_running_elsewhere_s": chaos.moved_seconds}


def outcome(db_url: str, ids: list[uuid.UUID], processed: tuple[int, int] | None
            ) -> dict[str, Any]:
    """What was stored, and, given what the engine says it processed (all tokens, and
    those it served from its cache), what the interruptions made it process again."""
    with Session(get_engine(db_url)) as session:
        costs = session.exec(select(JobCost).where(col(JobCost.job_id).in_(ids))).all()
        failed = session.exec(select(Job.failure, Job.error).where(
            Job.state == JobState.failed)).all()
        history = session.exec(select(JobAttempt.outcome, JobAttempt.charge, func.count())
                               .group_by(JobAttempt.outcome, JobAttempt.charge)).all()
        strikes = session.exec(select(func.count()).select_from(Job).where(
            Job.strikes > 0, Job.state == JobState.succeeded)).one()
    stored = sum(c.prompt_tokens + c.completion_tokens + c.verifier_tokens for c in costs)
    stored_cached = sum(c.cached_tokens + c.verifier_cached_tokens for c in costs)
    wasted = sum(c.wasted_tokens for c in costs)
    result = {
        "problems": len(ids), "states": states(db_url), "cost_rows": len(costs),
        "succeeded_jobs_with_strikes": strikes,
        "failed": [{"failure": f, "error": (e or "")[:160]} for f, e in failed],
        "attempts_by_outcome": {f"{o}/{c}": n for o, c, n in history},
        "batch_tokens": stored, "wasted_tokens_counted": wasted,
        "wasted_over_batch": round(wasted / stored, 4) if stored else None,
        "resumed_calls": sum(c.resumed_calls for c in costs),
    }
    if processed is not None:  # what the engine itself says it processed
        total, cached = processed
        result["engine_processed_tokens"] = total
        result["regenerated_over_batch"] = round((total - stored) / stored, 4)
        if cached:  # what it computed: its cache hits apart, on both sides
            computed, stored_computed = total - cached, stored - stored_cached
            result["engine_computed_tokens"] = computed
            result["recomputed_over_batch_computed"] = round(
                (computed - stored_computed) / stored_computed, 4)
    return result


def server_tokens(server: RunningServer) -> tuple[int, int]:
    """Prompt and generated tokens the SGLang server has processed, and the prompt tokens
    of those it served from its radix cache (its /metrics)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text

    def counter(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M))

    total = counter("sglang:prompt_tokens_total") + counter("sglang:generation_tokens_total")
    return int(total), int(counter("sglang:cached_tokens_total"))


def run_soak(engine: str, problems: int, poison: bool, kill_every: float,
             term_every: float) -> dict[str, Any]:
    with bench_database("ttcq_bench_soak") as db_url:
        env = {**os.environ, "TTCQ_DATABASE_URL": db_url, "TTCQ_REDIS_URL": REDIS_URL,
               "TTCQ_LEASE_SECONDS": "10", "TTCQ_REAPER_INTERVAL_SECONDS": "2"}
        env.pop("TTCQ_MAX_ATTEMPTS", None)  # the default attempts
        ids = make_jobs(db_url, engine, problems, poison)
        if engine == "double":
            LEDGER.write_text("")
            result = soak(db_url, engine, env, ids, kill_every, term_every)
            processed = sum(int(line) for line in LEDGER.read_text().split())
            result.update(outcome(db_url, ids, (processed, 0)))
            return result
        policy = server_paths()["TTCQ_POLICY_MODEL_DIR"]
        with sglang_server(policy, LOGS / "soak-sglang.log",
                           extra=("--max-total-tokens", "131072")) as server:
            env.update({"TTCQ_ENGINE": "sglang", "TTCQ_ENGINE_URL": server.url})
            before = server_tokens(server)
            result = soak(db_url, engine, env, ids, kill_every, term_every)
            after = server_tokens(server)
        result.update(outcome(db_url, ids, (after[0] - before[0], after[1] - before[1])))
        return result


def run_server_restart(problems: int, down: float) -> dict[str, Any]:
    """The real SGLang server SIGKILLed mid-batch and started again `down` s later."""
    with bench_database("ttcq_bench_restart") as db_url:
        env = {**os.environ, "TTCQ_DATABASE_URL": db_url, "TTCQ_REDIS_URL": REDIS_URL}
        env.pop("TTCQ_MAX_ATTEMPTS", None)
        ids = make_jobs(db_url, "sglang", problems, poison=False)
        policy = server_paths()["TTCQ_POLICY_MODEL_DIR"]
        log = LOGS / "restart_worker.log"
        log.write_bytes(b"")
        with sglang_server(policy, LOGS / "restart-sglang.log") as server:
            env.update({"TTCQ_ENGINE": "sglang", "TTCQ_ENGINE_URL": server.url})
            worker = start_worker(env, "sglang", log)
            try:
                while states(db_url).get("succeeded", 0) < problems // 4:
                    time.sleep(0.5)
                killed = time.monotonic()
                server.kill()
                time.sleep(down)
                server.start_again()
                back = time.monotonic()
                first_new = first_claim_after(db_url, back)
                while sum(states(db_url).get(s, 0) for s in ("succeeded", "failed")) < problems:
                    time.sleep(0.5)
            finally:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        result = {"down_s": down, "server_start_s": round(back - killed - down, 1),
                  "server_back_to_first_new_job_s": first_new}
        result.update(outcome(db_url, ids, None))
        return result


def first_claim_after(db_url: str, since: float) -> float:
    """Seconds from `since` (monotonic) until a job is claimed again."""
    from ttcq.db.models import utcnow

    wall = utcnow()
    while True:
        with Session(get_engine(db_url)) as session:
            claimed = session.exec(select(func.count()).select_from(Job).where(
                col(Job.started_at) >= wall, Job.state != JobState.queued)).one()
        if claimed:
            return round(time.monotonic() - since, 1)
        time.sleep(0.1)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["double", "sglang"], default="double")
    parser.add_argument("--problems", type=int, default=None)
    parser.add_argument("--poison", action="store_true")
    parser.add_argument("--kill-every", type=float, default=15.0)
    parser.add_argument("--term-every", type=float, default=40.0)
    parser.add_argument("--server-restart", action="store_true")
    parser.add_argument("--down", type=float, default=60.0)
    args = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    if args.server_restart:
        name, result = "sglang_restart", run_server_restart(args.problems or 48, args.down)
    else:
        problems = args.problems or (512 if args.engine == "double" else 128)
        name = f"{args.engine}{'_poison' if args.poison else ''}"
        result = run_soak(args.engine, problems, args.poison, args.kill_every,
                          args.term_every)
    path = RESULTS / "in_flight_soak.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    if "problems" in merged:  # the single-scenario file this replaced
        merged = {}
    merged[name] = result
    path.write_text(json.dumps(merged, indent=2) + "\n")
    return {name: result}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
