"""The Celery app, configured from the settings for at-least-once delivery that loses no job."""

from celery import Celery

from ttcq.settings import Settings, get_settings

SOLVE_TASK = "ttcq.solve"
DEFAULT_QUEUE = "ttcq"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    # Tasks are registered by worker.main (register_tasks): an app that only enqueues
    # (API, CLI) does not import the engine.
    app = Celery("ttcq", broker=settings.redis_url)
    app.conf.update(
        task_acks_late=True,  # ack after the task ran, so a crash re-delivers it
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a search is long: do not hoard messages
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(settings.task_time_limit - 30, 1),
        broker_transport_options={
            # Above the hard time limit, or Redis re-delivers a task that is still running.
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=DEFAULT_QUEUE,
        task_ignore_result=True,
        # Keep a search running through a broker blip (Celery 6 would cancel it): if its ack
        # is lost, Redis redelivers the message later and the claim skips the finished job.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )
    return app
