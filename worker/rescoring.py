"""Rescore a stored batch: for every solved job, its candidates scored again (by a verifier
when one is given, each stored step once) and its answers chosen again, all stored as one
rescore in one transaction. Nothing is generated; the new verifier's cost is kept apart."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from ttcq.db.models import Batch, Candidate
from ttcq.db.rescores import create_rescore, solved_jobs, step_paths, store_rescored
from ttcq.worker.engines.base import Usage
from ttcq.worker.search.config import Aggregation, SearchConfig, Selection
from ttcq.worker.search.rescore import Rescored, curve_group_size, rescore
from ttcq.worker.search.types import Candidate as SearchCandidate
from ttcq.worker.verifiers.base import Verifier


@dataclass
class RescoreSummary:
    rescore_id: uuid.UUID
    jobs: int = 0
    graded: int = 0
    correct: int = 0  # at the full budget, as rescored
    correct_before: int = 0  # at the full budget, as the search chose
    verifier_tokens: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def accuracy_before(self) -> float | None:
        return self.correct_before / self.graded if self.graded else None


def effective_selection(config: SearchConfig) -> Selection:
    """The selection the search used (self-refine without a verifier votes)."""
    if config.strategy == "self_refine" and config.verifier == "none" and not config.selection:
        return "majority"
    return config.final_selection


class RescoreError(ValueError):
    """A batch that cannot be rescored."""


def rescore_batch(
    *, session: Session, batch: Batch, aggregation: Aggregation | None = None,
    selection: Selection | None = None, verifier: Verifier | None = None, n_params: int = 0,
) -> RescoreSummary:
    """Store a rescore of the batch (what is not given keeps the batch's own choice)."""
    config = SearchConfig(**batch.config)
    if config.strategy == "compute_optimal":
        # Its candidates come from a probe and another strategy, scored or not: choosing
        # among them again would not be any search's choice.
        raise RescoreError("a compute_optimal batch cannot be rescored: its candidates "
                           "mix the probe's unscored samples with another strategy's")
    aggregation = aggregation or config.aggregation
    selection = selection or effective_selection(config)
    row = create_rescore(session=session, batch_id=batch.id, aggregation=aggregation,
                         selection=selection, verifier=verifier.name if verifier else None)
    summary = RescoreSummary(row.id)
    for page in solved_jobs(session=session, batch_id=batch.id):
        points: list[dict[str, Any]] = []
        chosen: list[dict[str, Any]] = []
        costs: list[dict[str, Any]] = []
        for job in page:
            step_scores, usage = _judge(session, job.job_id, job.problem, job.candidates,
                                        verifier)
            result = rescore([_domain(c) for c in job.candidates], aggregation=aggregation,
                             selection=selection, group_size=curve_group_size(config),
                             step_scores=step_scores)
            points += _points(job.job_id, job.candidates, result)
            chosen += _candidates(job.job_id, result)
            if verifier is not None:
                costs.append(_cost(job.job_id, usage, n_params))
            _count(summary, job.candidates, result, usage)
        store_rescored(session=session, rescore_id=row.id, points=points, candidates=chosen,
                       costs=costs)
    session.commit()
    return summary


def _judge(
    session: Session, job_id: uuid.UUID, problem: str, candidates: list[Candidate],
    verifier: Verifier | None,
) -> tuple[list[list[float]] | None, Usage]:
    """New step scores for each candidate: each stored step judged once, on its path."""
    if verifier is None:
        return None, Usage()
    paths = step_paths(session=session, job_id=job_id, leaves=[c.leaf_node_id for c in candidates])
    nodes: dict[int, list[str]] = {}
    for path in paths.values():
        for depth, (node_id, _) in enumerate(path):
            nodes.setdefault(node_id, [text for _, text in path[: depth + 1]])
    started = time.perf_counter()
    out = verifier.score(problem, list(nodes.values()), last_only=True)
    out.usage.seconds = out.usage.seconds or time.perf_counter() - started
    score_of = {node_id: scores[-1] for node_id, scores in zip(nodes, out.scores, strict=True)}
    scores = [[score_of[node_id] for node_id, _ in paths[c.leaf_node_id]] for c in candidates]
    return scores, out.usage


def _domain(c: Candidate) -> SearchCandidate:
    return SearchCandidate(index=c.idx, group=c.grp, leaf_id=c.leaf_node_id, text=c.text,
                           finish=c.finish, answer=c.answer,  # type: ignore[arg-type]
                           canonical=c.canonical, extraction=c.extraction,
                           step_scores=list(c.step_scores), score=c.score)


def _points(job_id: uuid.UUID, stored: list[Candidate], result: Rescored) -> list[dict[str, Any]]:
    by_index = {c.idx: c for c in stored}
    return [
        {"job_id": job_id, "n": n, "candidate_idx": idx,
         "answer": by_index[idx].answer if by_index[idx].finish == "stop" else None,
         "correct": by_index[idx].correct}
        for n, idx in result.curve.items()
    ]


def _candidates(job_id: uuid.UUID, result: Rescored) -> list[dict[str, Any]]:
    return [{"job_id": job_id, "idx": c.index, "step_scores": c.step_scores, "score": c.score,
             "selected": c.selected} for c in result.candidates]


def _cost(job_id: uuid.UUID, usage: Usage, n_params: int) -> dict[str, Any]:
    computed = usage.prompt_tokens - usage.cached_tokens + usage.completion_tokens
    return {"job_id": job_id, "verifier_tokens": usage.total_tokens,
            "verifier_cached_tokens": usage.cached_tokens, "verifier_calls": usage.calls,
            "verifier_seconds": usage.seconds, "flops": 2.0 * n_params * computed}


def _count(summary: RescoreSummary, stored: list[Candidate], result: Rescored,
           usage: Usage) -> None:
    summary.jobs += 1
    summary.verifier_tokens += usage.total_tokens
    final = stored[result.curve[max(result.curve)]]
    before = next((c for c in stored if c.selected), None)
    if final.correct is not None:
        summary.graded += 1
        summary.correct += bool(final.correct)
        summary.correct_before += bool(before is not None and before.correct)
