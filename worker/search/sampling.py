"""Strategies over N independent samples: majority, best-of-N, weighted best-of-N."""

from worker.engines.base import Completion, Engine, GenerationRequest
from worker.search.config import SearchConfig
from worker.search.run import SearchRun
from worker.search.scoring import aggregate
from worker.search.steps import split_steps
from worker.search.types import Candidate, Problem, SearchResult, TraceNode
from worker.verifiers.base import Verifier


def add_solution(run: SearchRun, parent: TraceNode, completion: Completion) -> TraceNode:
    """Record a whole generated solution as a chain of step nodes; returns the leaf.
    The call's prompt tokens land on the first step, its completion tokens per step."""
    pieces = split_steps(
        run.engine, completion.token_ids, completion.text, run.config.step_delimiter
    )
    node = parent
    for i, (text, n_tokens) in enumerate(pieces):
        node = run.trace.add(node, "step", text)
        node.completion_tokens = n_tokens
        if i == 0:
            node.prompt_tokens = completion.prompt_tokens
            node.cached_tokens = completion.cached_tokens
    node.status = "finished" if completion.finish_reason == "stop" else "truncated"
    return node


def record_scores(run: SearchRun, leaf: TraceNode, step_scores: list[float]) -> None:
    """Write step and running aggregated scores onto the nodes of leaf's path."""
    path = run.trace.path(leaf)
    for i, (node, score) in enumerate(zip(path[-len(step_scores) :], step_scores, strict=True)):
        node.step_score = score
        node.agg_score = aggregate(step_scores[: i + 1], run.config.aggregation)


def draw_samples(run: SearchRun, start: int = 0, count: int | None = None) -> list[Candidate]:
    """Samples start .. start+count-1 of the run (count: config.n); sample j is seeded
    seed + j, so drawing the first k and then the rest gives exactly the n of one call."""
    c = run.config
    count = c.n - start if count is None else count
    request = GenerationRequest(
        run.prompt_ids, run.params(max_tokens=c.max_tokens, seed=start), count
    )
    completions = run.generate([request])[0]
    candidates = []
    for i, completion in enumerate(completions, start=start):
        leaf = add_solution(run, run.root, completion)
        candidates.append(
            Candidate(
                index=i,
                group=i,
                leaf_id=leaf.id,
                text=completion.text,
                finish=completion.finish_reason,
            )
        )
    return candidates


def score_samples(run: SearchRun, candidates: list[Candidate]) -> None:
    """Score whole solutions in one verifier call; scores go on candidates and nodes."""
    leaves = [run.trace.nodes[c.leaf_id] for c in candidates]
    scores = run.score([[n.text for n in run.trace.path(leaf)] for leaf in leaves])
    for candidate, leaf, step_scores in zip(candidates, leaves, scores, strict=True):
        candidate.step_scores = step_scores
        record_scores(run, leaf, step_scores)


def sample_candidates(run: SearchRun, *, score: bool) -> list[Candidate]:
    candidates = draw_samples(run)
    if score:
        score_samples(run, candidates)
    return candidates


def majority(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    run = SearchRun(problem, config, engine, verifier)
    return run.finish(sample_candidates(run, score=False))


def best_of_n(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    run = SearchRun(problem, config, engine, verifier)
    return run.finish(sample_candidates(run, score=True))


# Weighted best-of-N differs only in its default selection ("weighted", see config).
weighted_best_of_n = best_of_n
