"""Response bodies of the endpoints that look into a batch or a job (api.routes_browse):
what the web console draws, typed here so that the OpenAPI spec publishes them."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ttcq.api.schemas import CandidatePublic, CostPublic, JobPublic


class ProblemRow(BaseModel):
    job_id: uuid.UUID
    line: int
    custom_id: str | None
    problem: str = Field(description="the first 160 characters of the problem")
    level: str | None = Field(description="the problem's `level` field, if it has one")
    state: str
    gold: str | None
    answer: str | None
    correct: bool | None
    failure: str | None = Field(description="why a failed job failed, as a short reason")
    tokens: int = Field(description="prompt + completion + verifier tokens (0 before a cost)")


class ProblemPage(BaseModel):
    total: int = Field(description="problems matching the filters, over all pages")
    offset: int
    limit: int
    levels: list[str] = Field(description="every level in the batch, for a level filter")
    items: list[ProblemRow]


class FailedJob(BaseModel):
    job_id: uuid.UUID
    line: int
    custom_id: str | None
    failure: str | None = Field(description="the short reason (see BatchPublic.failures)")
    error: str | None = Field(description="what the last attempt reported")
    attempts: int


class BatchCost(BaseModel):
    """What a batch cost so far, summed over its jobs that have a cost."""

    jobs: int = Field(description="jobs with a stored cost")
    correct: int = Field(description="of those, correct ones")
    prompt_tokens: int
    cached_tokens: int = Field(description="of the prompt tokens, those from the prefix cache")
    completion_tokens: int
    thinking_tokens: int = Field(description="of the completion tokens, those in thoughts")
    verifier_tokens: int
    verifier_cached_tokens: int
    engine_calls: int
    verifier_calls: int
    wasted_tokens: int = Field(description="processed for nothing by interrupted attempts")
    wall_seconds: float
    flops: float
    total_tokens: int = Field(description="prompt + completion + verifier")
    cache_hit_rate: float | None = Field(description="cached / prompt tokens")
    verifier_cache_hit_rate: float | None
    tokens_per_job: float | None
    tokens_per_correct: float | None = Field(description="total tokens / correct jobs")

    @classmethod
    def of(cls, sums: dict[str, Any]) -> "BatchCost":
        total = sums["prompt_tokens"] + sums["completion_tokens"] + sums["verifier_tokens"]
        return cls(
            **sums, total_tokens=total,
            cache_hit_rate=_share(sums["cached_tokens"], sums["prompt_tokens"]),
            verifier_cache_hit_rate=_share(sums["verifier_cached_tokens"],
                                           sums["verifier_tokens"]),
            tokens_per_job=_share(total, sums["jobs"]),
            tokens_per_correct=_share(total, sums["correct"]),
        )


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


class TreeNode(BaseModel):
    """A trace node without its text: fetch that from /v1/jobs/{id}/nodes/{node_id}."""

    node_id: int
    parent_id: int | None
    depth: int
    kind: str = Field(description="prompt, step, lookahead, critique, revision, rollout, "
                                  "forced, probe; stop and decision are notes without tokens")
    status: str = Field(description="expanded (kept), pruned, finished, truncated, selected")
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    step_score: float | None
    agg_score: float | None
    visits: int | None
    q_value: float | None
    preview: str = Field(description="the first 80 characters of the node's text")
    chars: int = Field(description="length of the node's text")


class BatchRef(BaseModel):
    id: uuid.UUID
    name: str
    strategy: str


class SameProblemJob(BaseModel):
    """Another of the caller's jobs of the same problem (same line and text), in another
    batch: what to compare a job with."""

    job_id: uuid.UUID
    line: int
    batch_id: uuid.UUID
    batch_name: str
    strategy: str
    created_at: datetime = Field(description="when the batch was submitted")
    state: str
    answer: str | None
    correct: bool | None
    tokens: int = Field(description="prompt + completion + verifier tokens (0 before a cost)")


class JobTree(BaseModel):
    """A job with its search tree: nodes, candidates and the path of the chosen one."""

    job: JobPublic
    batch: BatchRef
    cost: CostPublic | None
    candidates: list[CandidatePublic]
    nodes: list[TreeNode]
    chosen_path: list[int] = Field(
        description="node ids from the root to the chosen candidate's leaf (empty: none)")
