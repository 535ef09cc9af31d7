"""Enqueueing job ids (never objects: the task re-reads the row). Call after commit.

On Redis a batch's messages are written as kombu writes Celery's own (the same JSON
envelope on the same priority list), a thousand per LPUSH in one pipeline: sending
100,000 jobs one `send_task` at a time takes minutes, this takes seconds. The message
itself is Celery's (`app.amqp.create_task_message`), built once per call with marks in
place of the ids and copied per job; tests compare it with what `send_task` writes and
run it through a real worker. Other brokers get `send_task` per job."""

import base64
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from celery import Celery
from kombu import Producer
from kombu.exceptions import ChannelError, OperationalError
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.json import dumps as kombu_json

from ttcq.ids import uuid4s
from ttcq.worker.celery_app import DEFAULT_QUEUE, SOLVE_TASK

MESSAGES_PER_PUSH = 1000  # one LPUSH: about a megabyte of messages
PUSHES_PER_ROUND_TRIP = 8
# Marks stand for the per-message values in the template (each a string no id can equal).
TASK_MARK, JOB_MARK, TAG_MARK, BODY_MARK = (f"@@ttcq-{name}@@" for name in
                                            ("task", "job", "tag", "body"))


def queue_for(model: str) -> str:
    """One Celery queue per model, so a job only reaches workers serving its model."""
    return model or DEFAULT_QUEUE


def celery_priority(priority: int) -> int:
    """Our priority (higher runs first, clamped to 0..9) as Redis priority (0 runs first)."""
    return 9 - min(max(priority, 0), 9)


def enqueue_jobs(
    app: Celery, job_ids: Iterable[uuid.UUID], *, priority: int = 0, queue: str = DEFAULT_QUEUE,
    first: bool = False,
) -> int:
    """Send one solve message per job, in order; returns how many. With first, they go to
    the front of their queue (at their priority): jobs handed back mid-search finish
    before new ones start. Raises kombu's OperationalError when the broker is unreachable
    (some messages may be out by then)."""
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(app.amqp.queues[queue])
        if isinstance(producer.channel, RedisChannel):
            return _push_to_redis(app, producer, job_ids, queue, celery_priority(priority),
                                  first)
        return _send_one_by_one(app, producer, job_ids, queue, celery_priority(priority))


def _send_one_by_one(
    app: Celery, producer: Producer, job_ids: Iterable[uuid.UUID], queue: str, priority: int
) -> int:
    """Brokers other than Redis (none that ttcq deploys): Celery's own send_task per job."""
    count = 0
    for count, job_id in enumerate(job_ids, start=1):  # noqa: B007 (count survives)
        app.send_task(SOLVE_TASK, args=[str(job_id)], queue=queue, priority=priority,
                      producer=producer)
    return count


def _push_to_redis(
    app: Celery, producer: Producer, job_ids: Iterable[uuid.UUID], queue: str, priority: int,
    first: bool = False,
) -> int:
    channel: RedisChannel = producer.channel
    template = message_template(app, channel, queue, priority)
    key = _list_key(channel, queue, priority)
    count = 0
    try:
        with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            # Workers pop from the right end: LPUSH queues behind the rest, RPUSH in front.
            push = pipe.rpush if first else pipe.lpush
            for pushes, chunk in enumerate(_chunks(job_ids, MESSAGES_PER_PUSH), start=1):
                push(key, *template.fill_all(chunk))
                count += len(chunk)
                if pushes % PUSHES_PER_ROUND_TRIP == 0:
                    pipe.execute()
            pipe.execute()
    except producer.connection.connection_errors as error:
        raise OperationalError(str(error)) from error
    return count


def _list_key(channel: RedisChannel, queue: str, priority: int) -> str:
    """The Redis list kombu keeps a queue's messages of one priority in."""
    step = channel.priority(priority)
    return f"{queue}{channel.sep}{step}" if step else queue


def _chunks(items: Iterable[uuid.UUID], size: int) -> Iterator[list[uuid.UUID]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass(frozen=True)
class MessageTemplate:
    """The JSON kombu's Redis transport stores for a solve message, cut around its body
    (base64 of Celery's body, which holds the job id), with marks for the other ids."""

    head: str
    body: str
    tail: str

    def fill(self, job_id: uuid.UUID, task_id: uuid.UUID, tag: uuid.UUID) -> str:
        """One job's message, with a task id and a delivery tag of its own."""
        job = str(job_id)
        encoded = base64.b64encode(self.body.replace(JOB_MARK, job).encode()).decode()
        message = self.head + encoded + self.tail
        return (message.replace(TASK_MARK, str(task_id)).replace(JOB_MARK, job)
                .replace(TAG_MARK, str(tag)))

    def fill_all(self, job_ids: list[uuid.UUID]) -> list[str]:
        ids = uuid4s(2 * len(job_ids))
        return [self.fill(job_id, ids[2 * i], ids[2 * i + 1]) for i, job_id in enumerate(job_ids)]


def message_template(
    app: Celery, channel: RedisChannel, queue: str, priority: int
) -> MessageTemplate:
    """Celery's own solve message (as send_task builds it) in kombu's Redis envelope."""
    headers, properties, body, _ = app.amqp.create_task_message(
        TASK_MARK, SOLVE_TASK, [JOB_MARK], reply_to=app.thread_oid, ignore_result=None,
    )
    properties = {**properties, "delivery_mode": 2, "priority": priority}
    envelope = channel.prepare_message(BODY_MARK, priority, "application/json", "utf-8",
                                       headers, properties)
    envelope["properties"].update(body_encoding="base64", delivery_tag=TAG_MARK)
    envelope["properties"]["delivery_info"].update(exchange="", routing_key=queue)
    head, tail = kombu_json(envelope).split(BODY_MARK)
    return MessageTemplate(head, kombu_json(body), tail)


def pending_messages(app: Celery, queue: str) -> int:
    """Messages waiting in queue (over its priority lists) plus every message delivered and
    not yet acknowledged (Redis keeps those in one hash for all queues): an upper bound on
    the messages that can still reach a worker of this queue."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        try:
            waiting = channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:  # no list at all: nothing waiting
            waiting = 0
        return int(waiting) + int(channel.client.hlen(channel.unacked_key))


def stuck_deliveries(app: Celery, older_than: float) -> dict[str, uuid.UUID]:
    """Solve messages delivered over older_than seconds ago and never acknowledged, by
    delivery tag, with their job ids. A live worker claims a job within milliseconds of
    its message (or holds it for a retry's countdown); one that died in between leaves
    the message with Redis, unacknowledged, until the visibility timeout (above the task
    time limit: an hour by default)."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        if not isinstance(channel, RedisChannel):
            return {}
        client = channel.client
        tags = client.zrangebyscore(channel.unacked_index_key, 0, time.time() - older_than)
        if not tags:
            return {}
        stuck = {}
        for tag, raw in zip(tags, client.hmget(channel.unacked_key, tags), strict=True):
            job_id = _job_of(raw) if raw else None
            if job_id is not None:
                stuck[tag.decode() if isinstance(tag, bytes) else tag] = job_id
        return stuck


def _job_of(raw: bytes) -> uuid.UUID | None:
    """The job id a solve message in kombu's unacked hash carries, or None."""
    try:
        message = json.loads(raw)[0]
        if message["headers"].get("task") != SOLVE_TASK:
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        return uuid.UUID(args[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def forget(app: Celery, tags: Iterable[str]) -> None:
    """Drop unacknowledged messages (as an acknowledgement would)."""
    tags = list(tags)
    if not tags:
        return
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.client.pipeline() as pipe:
            pipe.zrem(channel.unacked_index_key, *tags).hdel(channel.unacked_key, *tags)
            pipe.execute()


def redeliver(app: Celery, tags: Iterable[str]) -> None:
    """Put unacknowledged messages back on their queues (as kombu does at the visibility
    timeout)."""
    with app.connection_for_write() as connection:
        qos = connection.default_channel.qos
        for tag in tags:
            qos.restore_by_tag(tag)
