"""Start a Celery worker: `ttcq worker`, or `python -m worker.main` (used by crash tests)."""

import argparse
import logging
import os
import socket
import sys

from celery import Celery

from ttcq.settings import Settings, get_settings
from ttcq.worker.backends import check_served_engine, make_engine
from ttcq.worker.celery_app import DEFAULT_QUEUE, make_celery
from ttcq.worker.crew import Crew
from ttcq.worker.drain import install_drain
from ttcq.worker.engines.base import EngineError
from ttcq.worker.engines.llamacpp import default_model_path, describe_build
from ttcq.worker.intake import install_intake
from ttcq.worker.leases import lease_board
from ttcq.worker.reaper import install_reaper
from ttcq.worker.service import CHECK_INTERVAL_SECONDS
from ttcq.worker.tasks import EngineFactory, database_sessions, register_tasks

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def make_crew(settings: Settings) -> Crew:
    """What a worker's searches share: their lease board, its intake, its engine watch."""
    sessions = database_sessions(settings.database_url)
    every = min(CHECK_INTERVAL_SECONDS, settings.lease_seconds / 3)
    return Crew(lease_board(sessions, settings.lease_seconds, every), sessions)


def create_worker_app(
    settings: Settings | None = None,
    *,
    engine_factory: EngineFactory | None = None,
    crew: Crew | None = None,
) -> Celery:
    """The Celery app of a worker: the solve task, a reaper running beside it, and the
    crew its searches share (leases, the engine watch, the intake, the drain)."""
    settings = settings or get_settings()
    app = make_celery(settings)
    crew = crew or make_crew(settings)
    register_tasks(app, settings=settings, crew=crew, engine_factory=engine_factory)
    install_intake(app, crew.intake)
    install_drain(app, crew)
    install_reaper(app, settings=settings, on_round=crew.beat)
    return app


def check_model(settings: Settings) -> None:
    """Exit at start when the model file is missing: a worker that cannot solve must not
    take messages (each would fail on its first job)."""
    try:
        path = settings.model_path or default_model_path()
    except EngineError as error:
        raise SystemExit(f"ttcq worker: {error}") from None
    if not os.path.isfile(path):
        raise SystemExit(f"ttcq worker: model file not found: {path} (TTCQ_MODEL_PATH)")


def check_engine(settings: Settings, in_flight: int = 1) -> str:
    """Refuse to start a worker whose engine cannot solve; a line saying what it runs
    (with a warning if a server's KV cache is too small for in_flight searches)."""
    if settings.engine == "llamacpp":
        check_model(settings)
        return describe_build(settings.n_threads)
    try:
        return check_served_engine(settings, in_flight)
    except EngineError as error:
        raise SystemExit(f"ttcq worker: {error}") from None


def pool_for(settings: Settings, concurrency: int | None) -> tuple[str, int]:
    """The Celery pool and its size. This is where the worker's concurrency is decided:

    - llama.cpp computes in this process and is not thread-safe: prefork, one child per
      engine (default 1), and Celery's hard time limit kills a stuck search.
    - A served engine only waits on HTTP while the server computes: a thread pool keeps
      `in_flight` searches running in one process, each sending its branch requests as it
      reaches them, so that the server's continuous batch stays full. Threads share one
      engine (one connection pool, one tokenizer); prefetch 1 per thread means the worker
      never holds more messages than it runs (back-pressure: a slow server slows the
      worker's intake, it fails nothing). Celery cannot kill a thread, so each search
      carries its own deadline (the time limit), checked before every engine call, and
      every call has an HTTP timeout."""
    if settings.engine == "llamacpp":
        return "prefork", concurrency or 1
    return "threads", concurrency or settings.in_flight


def run_worker(concurrency: int | None = None, queue: str = DEFAULT_QUEUE,
               loglevel: str = "INFO") -> None:
    """Run a worker until it is stopped (see pool_for for how it runs jobs at once)."""
    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    settings = get_settings()
    pool, size = pool_for(settings, concurrency)
    logging.getLogger(__name__).info(check_engine(settings, size))
    # Threads share one engine, built here; prefork children each build their own after
    # the fork (llama.cpp state does not survive one).
    shared = make_engine(settings) if pool == "threads" else None
    app = create_worker_app(settings, engine_factory=(lambda: shared) if shared else None)
    logging.getLogger(__name__).info("pool: %s, %d jobs at once", pool, size)
    worker = app.Worker(
        # A name of its own, so that several workers on one machine can be told apart
        # (`ttcq worker --drain --name ...`).
        hostname=f"ttcq{os.getpid()}@{socket.gethostname()}",
        concurrency=size,
        queues=[queue],
        loglevel=loglevel,
        pool_cls=pool,
        # Workers need not know each other: the job rows in Postgres coordinate them.
        without_gossip=True,
        without_mingle=True,
    )
    worker.start()
    if worker.exitcode:
        sys.exit(worker.exitcode)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.main", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--queue", default=DEFAULT_QUEUE)
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    run_worker(args.concurrency, args.queue, args.loglevel)


if __name__ == "__main__":
    main()
