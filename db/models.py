"""Tables: batches of jobs, and per job its trace nodes, candidates, cost and budget curve."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
)
from sqlmodel import AutoString, Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _when(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINAL_STATES = (JobState.succeeded, JobState.failed, JobState.cancelled)


class Batch(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner: str = Field(max_length=128, index=True)
    name: str = Field(default="", max_length=256)
    model: str = Field(default="", max_length=512)
    strategy: str = Field(max_length=64)
    config: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    priority: int = Field(default=0)
    total_jobs: int = Field(default=0)
    cancel_requested: bool = Field(default=False)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class JobBase(SQLModel):
    """A job's fields as the API shows them (JobPublic) and the table stores them (Job)."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    batch_id: uuid.UUID = Field(foreign_key="batch.id", index=True, ondelete="CASCADE")
    line: int = Field(description="1-based position in the submitted dataset")
    custom_id: str | None = Field(default=None, max_length=256)
    problem: str = Field(sa_type=Text)
    gold: str | None = Field(default=None, sa_type=Text)
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    state: JobState = Field(default=JobState.queued, index=True, sa_type=AutoString(16))
    attempts: int = Field(default=0, description="claims so far; each claim's fence")
    # What counts against max_attempts: failures that were the job's own (db.blame).
    strikes: int = Field(default=0,
                         description="failures charged to the job (at most max attempts)")
    # Interruptions shared with other searches, in a row, in which this job made no
    # progress; past a few, its next run is alone, where an interruption is a strike.
    stalls: int = Field(default=0, description="losses shared with other jobs, in a row, "
                                               "before any progress")
    worker: str | None = Field(default=None, max_length=256)
    error: str | None = Field(default=None, sa_type=Text)
    failure: str | None = Field(default=None, max_length=32,
                                description="why a failed job failed, as a short reason")
    answer: str | None = Field(default=None, sa_type=Text)
    correct: bool | None = None
    started_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    source_job_id: uuid.UUID | None = Field(
        default=None, foreign_key="job.id", index=True,
        description="a label job: the stored job whose candidates it labels")


class Job(JobBase, table=True):
    __table_args__ = (
        UniqueConstraint("batch_id", "line"),
        Index("ix_job_state_lease", "state", "lease_until"),
    )

    alone: bool = Field(default=False, description="this attempt runs with no other job")
    lease_until: datetime | None = _when()


class JobAttempt(SQLModel, table=True):
    """An attempt of a job that ended without its result: what ended it, and whether it
    was charged to the job. A job's history; its error field only holds the latest."""

    __tablename__ = "job_attempt"

    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    attempt: int = Field(primary_key=True)
    worker: str | None = Field(default=None, max_length=256)
    started_at: datetime | None = _when()
    ended_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    outcome: str = Field(max_length=16, description="lost, yielded, outage, transient, failed")
    charge: str = Field(max_length=8, description="none, stall or strike")
    progress: bool = Field(description="a checkpoint was saved during the attempt")
    message: str = Field(sa_column=Column(Text, nullable=False))


class JobCheckpoint(SQLModel, table=True):
    """A run of a search's journal (worker.journal): the engine and verifier calls from
    index seq on, compressed. A job's rows together are its checkpoint."""

    __tablename__ = "job_checkpoint"

    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    seq: int = Field(primary_key=True, description="index of the first call in this row")
    calls: int
    attempt: int
    next_key: str = Field(max_length=32, description="the call about to start at the save")
    elapsed: float = Field(description="the search's seconds so far, over its attempts")
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class WorkerState(SQLModel, table=True):
    """What each worker process is doing, for /metrics: running, paused (its engine is
    unreachable) or draining; seen_at is its last heartbeat."""

    __tablename__ = "worker_state"

    name: str = Field(primary_key=True, max_length=256)
    state: str = Field(max_length=16)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    seen_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    outages: int = Field(default=0, description="engine outages since the process started")


class TraceNodeBase(SQLModel):
    """A node of a job's search tree (its job_id is the table's)."""

    node_id: int
    parent_id: int | None = None
    depth: int
    kind: str = Field(max_length=16)
    status: str = Field(max_length=16)
    text: str = Field(sa_type=Text)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    step_score: float | None = None
    agg_score: float | None = None
    visits: int | None = Field(default=None, description="mcts: simulations through the node")
    q_value: float | None = Field(default=None, description="mcts: mean value backed up")


class TraceNode(TraceNodeBase, table=True):
    __tablename__ = "trace_node"
    __table_args__ = (PrimaryKeyConstraint("job_id", "node_id"),)

    job_id: uuid.UUID = Field(foreign_key="job.id", ondelete="CASCADE")


class CandidateBase(SQLModel):
    """A final candidate of a job (its job_id is the table's)."""

    idx: int
    grp: int = Field(description="sample, subtree or revision the candidate belongs to")
    leaf_node_id: int
    text: str = Field(sa_type=Text)
    finish: str = Field(max_length=16)
    answer: str | None = Field(default=None, sa_type=Text)
    canonical: str | None = Field(default=None, sa_type=Text)
    extraction: str | None = Field(default=None, max_length=32)
    step_scores: list[float] = Field(default_factory=list, sa_type=JSON)
    score: float | None = None
    confidence: float | None = Field(
        default=None, description="token confidence: the sample's lowest group confidence, "
                                  "where it was drawn with top-k logprobs")
    selected: bool = False
    correct: bool | None = None


class Candidate(CandidateBase, table=True):
    __table_args__ = (PrimaryKeyConstraint("job_id", "idx"),)

    job_id: uuid.UUID = Field(foreign_key="job.id", ondelete="CASCADE")


class StepLabelBase(SQLModel):
    """A solution's step labelled by rollouts from its prefix (ttcq label): the solution
    is candidate `candidate` of the job, the step its trace node `node_id`."""

    candidate: int
    step: int = Field(description="0-based step of the solution")
    node_id: int
    method: str = Field(max_length=16, description="math_shepherd or omega")
    rollouts: int = Field(description="rollouts from the prefix ending with this step")
    successes: int = Field(description="rollouts that reached the gold answer")
    hard: bool = Field(description="some rollout reached the gold (or implied by one later)")
    soft: float | None = Field(default=None,
                               description="successes / rollouts; None: implied, not measured")


class StepLabel(StepLabelBase, table=True):
    __tablename__ = "step_label"
    __table_args__ = (PrimaryKeyConstraint("job_id", "candidate", "step"),)

    job_id: uuid.UUID = Field(foreign_key="job.id", ondelete="CASCADE")


class JobCostBase(SQLModel):
    """What one job cost: generation and verifier tokens, calls, time and FLOPs."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    verifier_tokens: int = 0
    verifier_cached_tokens: int = 0
    engine_calls: int = 0
    verifier_calls: int = 0
    wall_seconds: float = 0.0
    engine_seconds: float = 0.0
    flops: float = 0.0
    # What ran the job, and whether the same seed would sample the same tokens again
    # (a served engine without seed support samples unseeded).
    engine_model: str = Field(default="", max_length=512)
    seeded: bool = True
    # Work lost to interruptions (a worker killed mid-call, a checkpoint that no longer
    # applied): tokens processed for nothing, cached ones apart; not in the counts above.
    wasted_tokens: int = 0
    wasted_cached_tokens: int = 0
    resumed_calls: int = Field(default=0, description="calls taken from a checkpoint")
    # Of completion_tokens, those generated inside reasoning models' thoughts.
    thinking_tokens: int = 0


class JobCost(JobCostBase, table=True):
    __tablename__ = "job_cost"

    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")


class BudgetPoint(SQLModel, table=True):
    """What the job would have answered with only the first n of its budget."""

    __tablename__ = "budget_point"

    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    n: int = Field(primary_key=True)
    candidate_idx: int
    answer: str | None = Field(default=None, sa_column=Column(Text))
    correct: bool | None = None


class Rescore(SQLModel, table=True):
    """Answers of a batch chosen again from its stored candidates, with another step-score
    aggregation, selection or verifier, and nothing generated again."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    batch_id: uuid.UUID = Field(foreign_key="batch.id", index=True, ondelete="CASCADE")
    aggregation: str = Field(max_length=16)
    selection: str = Field(max_length=16)
    verifier: str | None = Field(default=None, max_length=64,
                                 description="the verifier that scored again; None: stored scores")
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class RescorePoint(SQLModel, table=True):
    """What a rescored job answers with only the first n of its budget (as budget_point)."""

    __tablename__ = "rescore_point"

    rescore_id: uuid.UUID = Field(foreign_key="rescore.id", primary_key=True, ondelete="CASCADE")
    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    n: int = Field(primary_key=True)
    candidate_idx: int
    answer: str | None = Field(default=None, sa_column=Column(Text))
    correct: bool | None = None


class RescoreCandidate(SQLModel, table=True):
    """A stored candidate's scores under a rescore, and whether the rescore chose it."""

    __tablename__ = "rescore_candidate"

    rescore_id: uuid.UUID = Field(foreign_key="rescore.id", primary_key=True, ondelete="CASCADE")
    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    idx: int = Field(primary_key=True)
    step_scores: list[float] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    score: float | None = None
    selected: bool = False


class RescoreCost(SQLModel, table=True):
    """What the rescore's verifier cost for one job, apart from the job's own cost."""

    __tablename__ = "rescore_cost"

    rescore_id: uuid.UUID = Field(foreign_key="rescore.id", primary_key=True, ondelete="CASCADE")
    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    verifier_tokens: int = 0
    verifier_cached_tokens: int = 0
    verifier_calls: int = 0
    verifier_seconds: float = 0.0
    flops: float = 0.0
