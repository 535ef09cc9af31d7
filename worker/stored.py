"""A search's result as the rows storage keeps (db.results.SolvedJob), graded here:
grading is the worker's job, and storage stores what it is given."""

import uuid
from dataclasses import asdict
from functools import lru_cache

from sqlmodel import Session

from ttcq.db.jobs import Claim
from ttcq.db.models import JobCostBase
from ttcq.db.results import Row, SolvedJob, store_result
from ttcq.worker.search.answers import is_correct
from ttcq.worker.search.types import Candidate, SearchResult


def solved_job(job_id: uuid.UUID, gold: str | None, result: SearchResult,
               cost: JobCostBase) -> SolvedJob:
    candidates = [_candidate(job_id, gold, c) for c in result.candidates]
    by_index = {c["idx"]: c for c in candidates}
    curve: list[Row] = [
        {"job_id": job_id, "n": n, "candidate_idx": idx,
         "answer": by_index[idx]["answer"] if by_index[idx]["finish"] == "stop" else None,
         "correct": by_index[idx]["correct"]}
        for n, idx in result.curve.items()
    ]
    nodes: list[Row] = [
        {"job_id": job_id, "node_id": n.id, "parent_id": n.parent_id, "depth": n.depth,
         "kind": n.kind, "status": n.status, "text": n.text,
         "prompt_tokens": n.prompt_tokens, "cached_tokens": n.cached_tokens,
         "completion_tokens": n.completion_tokens, "step_score": n.step_score,
         "agg_score": n.agg_score, "visits": n.visits, "q_value": n.q_value}
        for n in result.trace.nodes
    ]
    labels: list[Row] = [{"job_id": job_id, **asdict(label)} for label in result.labels]
    return SolvedJob(answer=result.answer, correct=grade(gold, result.answer), nodes=nodes,
                     candidates=candidates, curve=curve,
                     cost={"job_id": job_id, **cost.model_dump()}, labels=labels)


def _candidate(job_id: uuid.UUID, gold: str | None, c: Candidate) -> Row:
    return {"job_id": job_id, "idx": c.index, "grp": c.group, "leaf_node_id": c.leaf_id,
            "text": c.text, "finish": c.finish, "answer": c.answer, "canonical": c.canonical,
            "extraction": c.extraction, "step_scores": c.step_scores, "score": c.score,
            "confidence": c.confidence, "selected": c.selected,
            "correct": grade(gold, c.answer if c.finished else None)}


@lru_cache(maxsize=4096)
def grade(gold: str | None, answer: str | None) -> bool | None:
    """Cached: a job's candidates mostly agree, and math-verify takes tens of µs a call."""
    return is_correct(gold, answer)


def store_search_result(*, session: Session, claim: Claim, gold: str | None,
                        result: SearchResult, cost: JobCostBase) -> bool:
    """Grade and store a solved job (db.results.store_result says what False means)."""
    return store_result(session=session, claim=claim,
                        solved=solved_job(claim.job_id, gold, result, cost))
