"""Batches for the console's tests: the ground-truth task searched by beam search and by
majority for alice (one job failed, one step holding markup as a model may write it), and a
batch of bob's that alice must not reach. Every batch holds the same problems at the same
lines, so a job has others of its problem to be compared with."""

import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select

from lab.ground_truth.task import make_dataset
from lab.ground_truth_batches import RUNS, run_batch, solve, submit
from ttcq.api.datasets import Limits, to_problems
from ttcq.db.attempts import fail_job
from ttcq.db.jobs import claim_job
from ttcq.db.models import Job, TraceNode
from ttcq.worker.service import SessionFactory

# A step as a model could write it: markup that must show as text, and a script that must
# not run (it would set window.__xss).
MARKUP_STEP = ('Step with <b>bold</b> & <script>window.__xss = 1</script>'
               '<img src=x onerror="window.__xss = 2">')
FAILURE = "search"
QUALITY = 4.0  # the self-judge: informative, not perfect (so beam search prunes right paths too)
FAILURE_MESSAGE = "ValueError: the search raised <here>"


@dataclass(frozen=True)
class ConsoleData:
    beam_batch: uuid.UUID
    beam_job: uuid.UUID  # line 1 of the beam-search batch
    markup_node: int  # the trace node of beam_job whose text is MARKUP_STEP
    majority_batch: uuid.UUID
    majority_job: uuid.UUID  # the same problem as beam_job
    failed_job: uuid.UUID  # a job of the majority batch, failed
    waiting_batch: uuid.UUID  # alice's, two jobs queued and none run
    waiting_job: uuid.UUID  # its line 1: beam_job's problem again
    bob_batch: uuid.UUID
    bob_job: uuid.UUID  # beam_job's problem too, but bob's


def _job_ids(sessions: SessionFactory, batch_id: uuid.UUID) -> list[uuid.UUID]:
    with sessions() as session:
        return list(session.exec(select(Job.id).where(Job.batch_id == batch_id)
                                 .order_by(col(Job.line))))


def _fail(sessions: SessionFactory, job_id: uuid.UUID) -> None:
    with sessions() as session:
        claim = claim_job(session=session, job_id=job_id, worker="w", lease_seconds=60,
                          max_attempts=3)
        assert claim is not None
        assert fail_job(session=session, claim=claim, failure=FAILURE,
                        message=FAILURE_MESSAGE, progress=False, worker="w")


def _mark_up_a_pruned_step(sessions: SessionFactory, job_id: uuid.UUID) -> int:
    with sessions() as session:
        node = session.exec(select(TraceNode).where(
            TraceNode.job_id == job_id, TraceNode.status == "pruned")
            .order_by(col(TraceNode.node_id))).first()
        assert node is not None, "the beam search pruned nothing"
        session.exec(update(TraceNode).where(  # type: ignore[call-overload]
            col(TraceNode.job_id) == job_id, col(TraceNode.node_id) == node.node_id)
            .values(text=MARKUP_STEP))
        session.commit()
        return node.node_id


def store_console_batches(sessions: SessionFactory, problems: int = 4) -> ConsoleData:
    rows = make_dataset(problems, seed=19)
    found = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, len(rows))))
    beam = run_batch(sessions, found, quality=QUALITY, owner="alice", **RUNS["beam_search_4"])
    beam_job = _job_ids(sessions, beam)[0]
    # Stopping once the answers agree leaves a stop node in the tree, as a note.
    majority, jobs = submit(sessions, found, "alice", **RUNS["majority"], early_stop=0.5)
    _fail(sessions, jobs[-1])
    solve(sessions, jobs[:-1], quality=QUALITY)
    waiting, waiting_jobs = submit(sessions, found[:2], "alice", **RUNS["majority"])
    bob = run_batch(sessions, found[:1], quality=QUALITY, owner="bob", **RUNS["majority"])
    return ConsoleData(beam, beam_job, _mark_up_a_pruned_step(sessions, beam_job), majority,
                       jobs[0], jobs[-1], waiting, waiting_jobs[0], bob,
                       _job_ids(sessions, bob)[0])
