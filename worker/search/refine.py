"""Self-refine: the model critiques and rewrites its previous attempt for R rounds.

The trace is one chain: attempt 0's steps under the prompt, then for each round a
"critique" node under the previous attempt's leaf and the revision's steps under the
critique (the first of them of kind "revision"). Every attempt is a candidate whose group
is its round, so the budget curve reads "the best answer after r rounds"."""

from dataclasses import dataclass

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.sampling import add_solution, record_scores
from ttcq.worker.search.types import Candidate, Problem, SearchResult, TraceNode
from ttcq.worker.verifiers.base import Verifier

CRITIQUE_ASK = "Review your solution step by step and point out any mistake."
REWRITE_ASK = (
    "Write a corrected solution, step by step, taking the review into account. "
    "Separate the steps with a blank line and write the final answer as \\boxed{answer}."
)


@dataclass
class Attempt:
    completion: Completion
    first: TraceNode  # its first step: the path from here to leaf is this attempt alone
    leaf: TraceNode


def _generate(run: SearchRun, prompt: list[int], max_tokens: int, seed: int) -> Completion:
    request = GenerationRequest(tuple(prompt), run.params(max_tokens=max_tokens, seed=seed))
    return run.generate([request])[0][0]


def _record(run: SearchRun, parent: TraceNode, completion: Completion) -> Attempt:
    first_id = len(run.trace.nodes)
    leaf = add_solution(run, parent, completion)
    return Attempt(completion, run.trace.nodes[first_id], leaf)


def _revise(run: SearchRun, previous: Attempt, round_: int) -> Attempt:
    """Critique the previous attempt, then rewrite it given the critique."""
    c, problem = run.config, run.problem.text
    shown = previous.completion.text
    critique_prompt = run.chat([problem, CRITIQUE_ASK], [shown])
    # A critique is commentary, not a solution: one step's worth of tokens is enough.
    critique = _generate(run, critique_prompt, c.max_step_tokens, seed=2 * round_ - 1)
    critique_node = run.trace.add(previous.leaf, "critique", critique.text, critique)
    rewrite_prompt = run.chat([problem, CRITIQUE_ASK, REWRITE_ASK], [shown, critique.text])
    rewrite = _generate(run, rewrite_prompt, c.max_tokens, seed=2 * round_)
    attempt = _record(run, critique_node, rewrite)
    attempt.first.kind = "revision"
    return attempt


def _score(run: SearchRun, attempts: list[Attempt], candidates: list[Candidate]) -> None:
    """Each attempt's own steps (not the earlier attempts above it) go to the verifier."""
    paths = [[n.text for n in run.trace.path(a.leaf)[a.first.depth - 1 :]] for a in attempts]
    for attempt, candidate, scores in zip(attempts, candidates, run.score(paths), strict=True):
        candidate.step_scores = scores
        record_scores(run, attempt.leaf, scores)


def self_refine(
    problem: Problem, config: SearchConfig, engine: Engine, verifier: Verifier
) -> SearchResult:
    if config.verifier == "none" and config.selection is None:
        # Without a verifier the revisions vote: majority over all attempts.
        config = config.model_copy(update={"selection": "majority"})
    run = SearchRun(problem, config, engine, verifier)
    first = _generate(run, list(run.prompt_ids), config.max_tokens, seed=0)
    attempts = [_record(run, run.root, first)]
    for round_ in range(1, config.rounds + 1):
        attempts.append(_revise(run, attempts[-1], round_))
    candidates = [
        Candidate(r, r, a.leaf.id, a.completion.text, a.completion.finish_reason)
        for r, a in enumerate(attempts)
    ]
    if config.verifier != "none":
        _score(run, attempts, candidates)
    return run.finish(candidates)
