"""Step labels from rollouts: for a solution's step, R continuations from the prefix that
ends with it, each graded against the gold answer.

- math_shepherd (Wang et al. 2023): every step is rolled out; hard label = some rollout
  reached the gold, soft label = the share that did.
- omega (after OmegaPRM, Luo et al. 2024): a wrong solution's first wrong step is found by
  binary search over its prefixes, rolling out only where the search looks; a rollout
  that reaches the gold from a prefix proves every earlier step sound too. Labels run up to
  that step; a right solution's steps are all sound (the solution itself is the witness).

A solution's last step is labelled by grading the solution itself (no rollouts). The
solutions are sampled here (config.n of them) or handed in (problem.solutions: a stored
batch's candidates, whose cost was that batch's). Solutions come first among the
candidates; each rollout is a candidate too (its text is the whole solution it makes).
The job's own answer is the majority of its solutions.

One engine call per round (a step depth, or a binary-search round) over all solutions, so
the journal's checkpoints fall between rounds: a killed job resumes at the first round it
had not finished."""

from dataclasses import dataclass, field

from ttcq.worker.engines.base import Completion, Engine, GenerationRequest
from ttcq.worker.search.answers import is_correct
from ttcq.worker.search.config import SearchConfig
from ttcq.worker.search.run import SearchRun
from ttcq.worker.search.sampling import add_solution
from ttcq.worker.search.scoring import budget_curve, select
from ttcq.worker.search.types import Candidate, Problem, SearchResult, StepLabel, TraceNode
from ttcq.worker.verifiers.base import Verifier


@dataclass
class Solution:
    """A solution being labelled: its candidate, its step nodes and the token ids that
    end each step (prefix i is ids[:ends[i]])."""

    candidate: Candidate
    steps: list[TraceNode]
    ids: tuple[int, ...]
    ends: list[int]
    correct: bool = False
    labels: dict[int, StepLabel] = field(default_factory=dict)


# A request to roll out: (solution, step) pairs whose prefixes are rolled out R times.
Probe = tuple[Solution, int]


class Labeller:
    def __init__(self, problem: Problem, config: SearchConfig, engine: Engine,
                 verifier: Verifier, method: str):
        if problem.gold is None:
            raise ValueError("labelling needs the problem's gold answer")
        self.gold = problem.gold
        self.method = method
        self.run = SearchRun(problem, config, engine, verifier)
        self.rollouts: list[Candidate] = []
        self._grades: dict[str | None, bool] = {}
        self.solutions = self._given() if problem.solutions else self._sampled()
        self.run.read_answers([s.candidate for s in self.solutions])
        for solution in self.solutions:
            solution.correct = solution.candidate.finished and self.grade(
                solution.candidate.answer)

    def _sampled(self) -> list[Solution]:
        c = self.run.config
        request = GenerationRequest(self.run.prompt_ids, self.run.params(
            max_tokens=c.max_tokens, seed=0), c.n)
        return [self._solution(i, completion)
                for i, completion in enumerate(self.run.generate([request])[0])]

    def _given(self) -> list[Solution]:
        """Solutions written elsewhere, as step chains that cost this job nothing."""
        out = []
        for i, text in enumerate(self.run.problem.solutions):
            completion = Completion(self.run.engine.tokenize(text), text, "stop", None, 0, 0)
            solution = self._solution(i, completion)
            for node in solution.steps:
                node.completion_tokens = 0
            out.append(solution)
        return out

    def _solution(self, index: int, completion: Completion) -> Solution:
        leaf = add_solution(self.run, self.run.root, completion)
        steps = self.run.trace.path(leaf)
        candidate = Candidate(index=index, group=index, leaf_id=leaf.id, text=completion.text,
                              finish=completion.finish_reason)
        ends, total = [], 0
        for node in steps:  # add_solution cut the solution on token boundaries
            total += node.completion_tokens
            ends.append(total)
        return Solution(candidate, steps, tuple(completion.token_ids), ends)

    def grade(self, answer: str | None) -> bool:
        if answer not in self._grades:
            self._grades[answer] = bool(is_correct(self.gold, answer))
        return self._grades[answer]

    def roll_out(self, probes: list[Probe]) -> list[int]:
        """R rollouts from each probe's prefix, in one engine call; the successes of each."""
        if not probes:
            return []
        config = self.run.config
        requests = [
            GenerationRequest(
                self.run.prompt_ids + solution.ids[: solution.ends[step]],
                self.run.params(max_tokens=config.max_tokens, seed=self._seed(solution, step)),
                config.rollouts,
            )
            for solution, step in probes
        ]
        answers = self.run.generate(requests)
        return [self._record(solution, step, completions)
                for (solution, step), completions in zip(probes, answers, strict=True)]

    def _seed(self, solution: Solution, step: int) -> int:
        """Seeds no sampled solution uses, distinct per (solution, step, rollout)."""
        rollouts = self.run.config.rollouts
        stride = (max(len(s.steps) for s in self.solutions) + 1) * rollouts
        return len(self.solutions) + solution.candidate.index * stride + step * rollouts

    def _record(self, solution: Solution, step: int, completions: list[Completion]) -> int:
        """Store the rollouts as trace nodes and candidates; count those that are right."""
        parent = solution.steps[step]
        prefix = "".join(node.text for node in solution.steps[: step + 1])
        found = []
        for completion in completions:
            node = self.run.trace.add(parent, "rollout", completion.text, completion,
                                      "finished" if completion.finish_reason == "stop"
                                      else "truncated")
            found.append(Candidate(index=-1, group=solution.candidate.group, leaf_id=node.id,
                                   text=prefix + completion.text,
                                   finish=completion.finish_reason))
        self.run.read_answers(found)
        for candidate in found:
            candidate.index = len(self.solutions) + len(self.rollouts)
            self.rollouts.append(candidate)
        return sum(1 for c in found if c.finished and self.grade(c.answer))

    def label(self, solution: Solution, step: int, rollouts: int, successes: int, *,
              hard: bool | None = None, soft: float | None = None) -> None:
        """A step's label; without a hard value, some success; without a soft value, the
        share of successes (None for a step labelled without rollouts of its own)."""
        if soft is None and rollouts:
            soft = successes / rollouts
        solution.labels[step] = StepLabel(
            candidate=solution.candidate.index, step=step, node_id=solution.steps[step].id,
            rollouts=rollouts, successes=successes,
            hard=successes > 0 if hard is None else hard, soft=soft, method=self.method)

    def label_last(self, solution: Solution) -> None:
        """A finished solution's last step: its label is the solution's own grade."""
        correct = solution.correct
        self.label(solution, len(solution.steps) - 1, 0, int(correct), hard=correct,
                   soft=float(correct))

    def result(self) -> SearchResult:
        """Solutions then rollouts as candidates; the solutions' majority answers."""
        solutions = [s.candidate for s in self.solutions]
        chosen = select(solutions, "majority")
        solutions[chosen].selected = True
        self.run.trace.nodes[solutions[chosen].leaf_id].status = "selected"
        labels = [label for s in self.solutions for _, label in sorted(s.labels.items())]
        return SearchResult(
            strategy=self.run.config.strategy, candidates=solutions + self.rollouts,
            trace=self.run.trace, selected=chosen, generation=self.run.engine.usage,
            verification=self.run.verification,
            curve=budget_curve(solutions, "majority", len(solutions)), labels=labels,
            thinking_tokens=self.run.thinking_tokens)


def _rolled_steps(solution: Solution) -> int:
    """Steps whose labels need rollouts: all but a finished solution's last, which its
    grade labels (a cut-off solution's last step might still go on to the gold)."""
    return len(solution.steps) - (1 if solution.candidate.finished else 0)


def math_shepherd(problem: Problem, config: SearchConfig, engine: Engine,
                  verifier: Verifier) -> SearchResult:
    labeller = Labeller(problem, config, engine, verifier, "math_shepherd")
    depth = 0
    while probes := [(s, depth) for s in labeller.solutions if depth < _rolled_steps(s)]:
        for (solution, step), successes in zip(probes, labeller.roll_out(probes), strict=True):
            labeller.label(solution, step, config.rollouts, successes)
        depth += 1
    for solution in labeller.solutions:
        if solution.candidate.finished:
            labeller.label_last(solution)
    return labeller.result()


def omega(problem: Problem, config: SearchConfig, engine: Engine,
          verifier: Verifier) -> SearchResult:
    labeller = Labeller(problem, config, engine, verifier, "omega")
    # Binary search bounds per wrong solution: prefix `low` is known sound (-1: the bare
    # problem), prefix `high` known unsound (at first the whole finished solution; past
    # the end of a cut-off one, which may have no wrong step).
    bounds = {id(s): [-1, _rolled_steps(s)] for s in labeller.solutions if not s.correct}
    measured: dict[int, dict[int, int]] = {key: {} for key in bounds}
    wrong = [s for s in labeller.solutions if not s.correct]
    while probes := [(s, _middle(bounds[id(s)])) for s in wrong if _open(bounds[id(s)])]:
        for (solution, step), successes in zip(probes, labeller.roll_out(probes), strict=True):
            measured[id(solution)][step] = successes
            bounds[id(solution)][0 if successes else 1] = step
    for solution in labeller.solutions:
        _omega_labels(labeller, solution, bounds.get(id(solution)),
                      measured.get(id(solution), {}))
    return labeller.result()


def _open(bound: list[int]) -> bool:
    return bound[1] - bound[0] > 1


def _middle(bound: list[int]) -> int:
    return (bound[0] + bound[1]) // 2


def _omega_labels(labeller: Labeller, solution: Solution, bound: list[int] | None,
                  measured: dict[int, int]) -> None:
    """Steps before the first wrong one are sound (measured where probed, else implied by
    a later success); the first wrong step is unsound; later steps are not labelled."""
    rollouts = labeller.run.config.rollouts
    last = len(solution.steps) - 1
    first_wrong = len(solution.steps) if bound is None else bound[1]
    for step in range(min(first_wrong, len(solution.steps))):
        if step in measured:
            labeller.label(solution, step, rollouts, measured[step])
        elif step == last and solution.candidate.finished:
            labeller.label_last(solution)
        else:
            labeller.label(solution, step, 0, 0, hard=True)
    if first_wrong == last and solution.candidate.finished:
        labeller.label_last(solution)
    elif first_wrong <= last:
        labeller.label(solution, first_wrong, rollouts, measured[first_wrong])

