"""Tables: batches of jobs, and per job its trace nodes, candidates, cost and budget curve."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


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


class Job(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("batch_id", "line"),
        Index("ix_job_state_lease", "state", "lease_until"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    batch_id: uuid.UUID = Field(foreign_key="batch.id", index=True, ondelete="CASCADE")
    line: int = Field(description="1-based position in the submitted dataset")
    custom_id: str | None = Field(default=None, max_length=256)
    problem: str = Field(sa_column=Column(Text, nullable=False))
    gold: str | None = Field(default=None, sa_column=Column(Text))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default=JobState.queued, max_length=16, index=True)
    attempts: int = Field(default=0)
    lease_until: datetime | None = _when()
    worker: str | None = Field(default=None, max_length=256)
    error: str | None = Field(default=None, sa_column=Column(Text))
    answer: str | None = Field(default=None, sa_column=Column(Text))
    correct: bool | None = None
    started_at: datetime | None = _when()
    finished_at: datetime | None = _when()


class TraceNode(SQLModel, table=True):
    __tablename__ = "trace_node"

    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    node_id: int = Field(primary_key=True)
    parent_id: int | None = None
    depth: int
    kind: str = Field(max_length=16)
    status: str = Field(max_length=16)
    text: str = Field(sa_column=Column(Text, nullable=False))
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    step_score: float | None = None
    agg_score: float | None = None


class Candidate(SQLModel, table=True):
    job_id: uuid.UUID = Field(foreign_key="job.id", primary_key=True, ondelete="CASCADE")
    idx: int = Field(primary_key=True)
    grp: int = Field(description="sample, subtree or revision the candidate belongs to")
    leaf_node_id: int
    text: str = Field(sa_column=Column(Text, nullable=False))
    finish: str = Field(max_length=16)
    answer: str | None = Field(default=None, sa_column=Column(Text))
    canonical: str | None = Field(default=None, sa_column=Column(Text))
    extraction: str | None = Field(default=None, max_length=32)
    step_scores: list[float] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    score: float | None = None
    selected: bool = False
    correct: bool | None = None


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
