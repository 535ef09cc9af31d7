"""Strategies over N independent samples: majority, best-of-N, weighted best-of-N, each
optionally stopping early once the answers drawn so far agree."""

from collections.abc import Callable

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest
from ttcq.worker.search.answers import canonical_answer, extract_answer
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.deepconf import completion_confidences, lowest_group
from ttcq.worker.search.forcing import draw_forced
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.scoring import aggregate
from ttcq.worker.search.steps import split_steps
from ttcq.worker.search.types import Candidate, Problem, SearchResult, TraceNode
from ttcq.worker.verifiers.base import Verifier


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
    if (c.think_budget, c.think_min, c.probe_every) != (None, None, None):
        return draw_forced(run, start, count)
    request = GenerationRequest(
        run.prompt_ids,
        run.params(max_tokens=c.max_tokens, seed=start, top_logprobs=c.confidence_top_k),
        count,
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
                confidence=sample_confidence(completion, c) if c.confidence_top_k else None,
            )
        )
    return candidates


def sample_confidence(completion: Completion, config: SearchConfig) -> float:
    """DeepConf's trace confidence of one sample: its lowest group confidence."""
    confidences = completion_confidences(completion, "confidence_top_k",
                                         config.confidence_top_k)
    # Never below 0 (minus a logprob), though the sliding sum's rounding can dip there and
    # a policy's last bin starts at 0.
    return max(0.0, lowest_group(confidences, config.confidence_window))


def score_samples(run: SearchRun, candidates: list[Candidate]) -> None:
    """Score whole solutions in one verifier call; scores go on candidates and nodes."""
    leaves = [run.trace.nodes[c.leaf_id] for c in candidates]
    scores = run.score([[n.text for n in run.trace.path(leaf)] for leaf in leaves])
    for candidate, leaf, step_scores in zip(candidates, leaves, scores, strict=True):
        candidate.step_scores = step_scores
        record_scores(run, leaf, step_scores)


def sample_candidates(run: SearchRun, *, score: bool) -> list[Candidate]:
    """n samples in one engine call, or, with early stopping, in rounds until the answers
    agree. Sample i is seeded seed + i either way: on an engine whose sampling does not
    depend on how a call is batched, the samples drawn are the first of the full run."""
    c = run.config
    candidates: list[Candidate] = []
    while len(candidates) < c.n:
        size = c.n - len(candidates)
        if c.early_stop is not None:
            size = min(size, c.early_stop_round)
        drawn = draw_samples(run, len(candidates), size)
        if score:
            score_samples(run, drawn)
        candidates += drawn
        if c.early_stop is not None and (
                reason := settled(candidates, c, answer_part=run.answer_part)):
            if len(candidates) < c.n:
                run.trace.add(run.root, "stop", reason)
            break
    return candidates


def settled(candidates: list[Candidate], config: SearchConfig,
            answer_part: Callable[[str], str] = lambda text: text) -> str | None:
    """Why sampling may stop here, or None: the leading answer holds at least the
    early_stop share of all samples so far (cut-off and answerless ones count against it).
    Where the selection weighs answers by score (weighted best-of-N), so does the share."""
    assert config.early_stop is not None
    drawn = len(candidates)
    if drawn < config.early_stop_min:
        return None
    by_score = config.final_selection == "weighted"
    weight: dict[str, float] = {}
    total = 0.0
    for c in candidates:
        w = aggregate(c.step_scores, config.aggregation) if by_score else 1.0
        total += w
        key = (canonical_answer(extract_answer(answer_part(c.text)).answer) if c.finished
               else None)
        if key is not None:
            weight[key] = weight.get(key, 0.0) + w
    if not weight or total <= 0.0:
        return None
    answer = max(weight, key=lambda k: weight[k])  # ties: the answer seen first
    if weight[answer] < config.early_stop * total:
        return None
    held = (f"{weight[answer]:.3g} of the score sum {total:.3g}" if by_score
            else f"{weight[answer]:g} of {drawn}")
    return (
        f"early stop after {drawn} of {config.n} samples: {held} agree on {answer} "
        f"(rule: share >= {config.early_stop:g} after >= {config.early_stop_min} samples)"
    )


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
