"""A real Celery worker's intake (worker.intake): paused, it takes no message; resumed, it
takes them again; and after many pauses and resumes from many threads, racing on the
consumer's event loop, it ends as its reasons say."""

import threading
import time
import uuid

from celery.contrib.testing.worker import start_worker

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from tests.utils.jobs import job_of, wait_for
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import JobState
from ttcq.settings import Settings
from ttcq.worker.main import create_worker_app, make_crew
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.search.config import make_config
from ttcq.worker.service import SessionFactory


def _job(sessions: SessionFactory, seed: int) -> uuid.UUID:
    [row] = make_dataset(1, seed=seed)
    with sessions() as session:
        _, [job_id] = create_batch(
            session=session, owner="tester", problems=[ProblemIn(1, row["problem"])],
            config=make_config(strategy="majority", n=2, verifier="none").model_dump())
    return job_id


def test_a_paused_worker_takes_no_message_and_takes_them_again_when_resumed(
    sessions: SessionFactory, db_url: str, redis_url: str,
) -> None:
    settings = Settings(database_url=db_url, redis_url=redis_url, engine="sglang",
                        engine_url="http://double.invalid")
    engine = GroundTruthEngine()  # TEST DOUBLE: an instant engine
    crew = make_crew(settings)
    app = create_worker_app(settings, engine_factory=lambda: engine, crew=crew)
    with start_worker(app, perform_ping_check=False, pool="threads", concurrency=4,
                      shutdown_timeout=30):
        crew_intake = crew.intake
        wait_for(lambda: crew_intake._consumer is not None, 30, "the intake to attach")

        def flap(reason: str) -> None:
            for _ in range(50):
                crew_intake.pause(reason)
                crew_intake.resume(reason)

        threads = [threading.Thread(target=flap, args=(f"r{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        taken = _job(sessions, seed=0)  # every reason is over: it takes messages
        enqueue_jobs(app, [taken])
        wait_for(lambda: job_of(sessions, taken).state == JobState.succeeded, 30,
                 "a job to run after the pauses are over")
        crew_intake.pause("engine down")
        held = _job(sessions, seed=1)
        enqueue_jobs(app, [held])
        time.sleep(3)
        assert job_of(sessions, held).state == JobState.queued
        crew_intake.resume("engine down")
        wait_for(lambda: job_of(sessions, held).state == JobState.succeeded, 30,
                 "the held job to run once the worker takes messages again")
    app.close()
