"""compute_optimal: a probe of k samples estimates how hard the problem is (its answer
agreement, its verifier scores, or its token confidence: worker.search.policy), the
policy's bin for that estimate names a strategy and budget, and that strategy runs.
Nothing of the probe is thrown away: its samples (and scores) stay candidates and its
tokens count in the problem's cost. A policy without a probe (k = 0) runs its one bin's
strategy.

- Settled (the bin's n is 0): the probe's answer stands (its majority; with the verifier
  signal its best-scored sample); nothing more runs. A confidence probe is drawn with the
  policy's top_k logprobs (its tokens are the same; each sample's confidence is stored on
  its candidate), and its majority stands.
- A sampling strategy: the probe's k samples are the first k of its n (sample j is seeded
  seed + j either way), so only n - k more are drawn (and only those scored), and the
  result is exactly the one that strategy alone would give at n, probe cost included.
- Any other strategy runs through the registry on its own; its trace is grafted under
  the same prompt node and its candidates follow the probe's, and its choice is final.

Like beam search's, the budget curve of a compute_optimal job has the one point n = the
job's budget (its final answer). A point at n = k for the probe's answer was tried and
dropped: reports charge a point n of N the share n/N of the job's tokens, which is not
what the probe cost; the probe's answer and bin are in the trace's decision node."""

from ttcq.worker.engines.base import Engine
from ttcq.worker.search.config import SearchConfig, bin_config
from ttcq.worker.search.names import SAMPLING_STRATEGIES
from ttcq.worker.search.policy import (
    Policy,
    fitting_budget,
    mean_score,
    probe_agreement,
)
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.sampling import draw_samples, score_samples
from ttcq.worker.search.scoring import aggregate
from ttcq.worker.search.strategies import run_base_strategy
from ttcq.worker.search.types import Aggregation, Candidate, Problem, SearchResult, TraceNode
from ttcq.worker.verifiers.base import Verifier

SIGNAL_NAMES = {"agreement": "agreement", "verifier": "verifier score",
                "confidence": "token confidence"}


def compute_optimal(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    policy = config.compute_policy
    k = policy.probe
    by_score = policy.difficulty == "verifier"
    by_confidence = policy.difficulty == "confidence"
    probe_config = config.model_copy(update={
        "strategy": "best_of_n" if by_score else "majority", "n": max(k, 1),
        "selection": "naive" if by_score else "majority",
        "aggregation": policy.aggregation or config.aggregation,
        "confidence_top_k": policy.top_k if by_confidence else 0,
        "confidence_window": policy.window})
    run = SearchRun(problem, probe_config, engine, verifier)
    probe: list[Candidate] = []
    if k:
        probe = draw_samples(run, 0, k)
        run.read_answers(probe)
        if by_score:
            score_samples(run, probe)
        found = _confidence(probe, policy, probe_config.aggregation)
        index = policy.bin_of(found)
        why = f"{SIGNAL_NAMES[policy.difficulty]} {found:.2f}"
    else:
        index, why = 0, "no probe (the policy runs one strategy for every problem)"
    n, ledger = _budget(config, policy)
    chosen = bin_config(config.model_copy(update={"n": n}), policy.bins[index]) if (
        policy.bins[index].n and n) else None
    choice = "settled, the probe's answer stands" if chosen is None else (
        f"{chosen.strategy} n={chosen.n}")
    run.trace.add(run.root, "decision",
                  f"bin {index + 1} of {len(policy.bins)}: {why}{ledger} -> {choice}")
    if chosen is None:
        result = run.finish(probe)
    elif chosen.strategy in SAMPLING_STRATEGIES and probe:
        result = _sample_on(run, probe, chosen)
    else:
        result = _graft(run, probe, run_base_strategy(problem, chosen, engine, verifier))
    result.strategy = "compute_optimal"
    result.curve = {config.n: result.selected}
    return result


def _budget(config: SearchConfig, policy: Policy) -> tuple[int | None, str]:
    """The job's n, and what the decision says of it: the batch's n, or with a batch
    budget what fits the tokens per problem left (None: only the probe; without a probe,
    the least)."""
    left = config.batch_allowance
    if left is None:
        return config.n, ""
    n = fitting_budget(policy, left)
    if n is None and policy.probe == 0:
        n = 1
    fits = f"n={n}" if n else "the probe only"
    return n, f"; batch budget: {left:.0f} tokens per problem left, {fits}"


def _confidence(probe: list[Candidate], policy: Policy, aggregation: Aggregation) -> float:
    if policy.difficulty == "agreement":
        return probe_agreement(probe)
    if policy.difficulty == "confidence":
        return mean_score([c.confidence for c in probe])
    return mean_score([aggregate(c.step_scores, aggregation) if c.finished else None
                       for c in probe])


def _sample_on(run: SearchRun, probe: list[Candidate], chosen: SearchConfig) -> SearchResult:
    """The rest of a sampling strategy's n samples (all k if n <= k: none is dropped)."""
    total = max(chosen.n, len(probe))
    run.config = chosen.model_copy(update={"n": total})
    more = draw_samples(run, len(probe), total - len(probe)) if total > len(probe) else []
    candidates = probe + more
    unscored = [c for c in candidates if not c.step_scores]  # a verifier probe's are scored
    if chosen.strategy != "majority" and unscored:
        score_samples(run, unscored)
    return run.finish(candidates)


def _graft(run: SearchRun, probe: list[Candidate], inner: SearchResult) -> SearchResult:
    """The probe's run and another strategy's result as one result: the inner trace under
    our prompt node, its candidates after the probe's, both usages summed."""
    offset = len(run.trace.nodes) - 1  # inner node i (i >= 1) becomes node i + offset
    root = run.trace.nodes[0]
    for node in inner.trace.nodes[1:]:
        parent = 0 if node.parent_id in (0, None) else node.parent_id + offset
        run.trace.nodes.append(_moved(node, node.id + offset, parent))
    inner_root = inner.trace.nodes[0]  # strategies put no tokens here; carried if one did
    root.prompt_tokens += inner_root.prompt_tokens
    root.cached_tokens += inner_root.cached_tokens
    root.completion_tokens += inner_root.completion_tokens
    k = len(probe)
    moved = [_shifted(c, k, offset) for c in inner.candidates]
    generation, verification = run.engine.usage, run.verification
    generation.add(inner.generation)
    verification.add(inner.verification)
    return SearchResult(strategy=inner.strategy, candidates=probe + moved, trace=run.trace,
                        selected=inner.selected + k, generation=generation,
                        verification=verification,
                        thinking_tokens=run.thinking_tokens + inner.thinking_tokens)


def _moved(node: TraceNode, new_id: int, parent: int) -> TraceNode:
    return TraceNode(
        id=new_id, parent_id=parent, depth=node.depth, kind=node.kind, text=node.text,
        status=node.status, prompt_tokens=node.prompt_tokens,
        cached_tokens=node.cached_tokens, completion_tokens=node.completion_tokens,
        step_score=node.step_score, agg_score=node.agg_score,
    )


def _shifted(c: Candidate, k: int, offset: int) -> Candidate:
    return Candidate(
        index=c.index + k, group=c.group + k, leaf_id=c.leaf_id + offset, text=c.text,
        finish=c.finish, answer=c.answer, canonical=c.canonical, extraction=c.extraction,
        step_scores=c.step_scores, score=c.score, selected=c.selected,
        confidence=c.confidence,
    )

