"""Step labels as training data: TRL's stepwise-supervision rows (`prompt`, `completions`,
`labels`, as its PRM trainer reads them, with the soft labels beside) and OpenR /
OmegaPRM-style trees (a question, its solutions, each step with its rollout counts, or
for an MCTS batch its visits and Q-value)."""

from collections.abc import Iterable, Iterator
from typing import Any, Literal

from ttcq.db.labels import LabelledSolution
from ttcq.db.models import StepLabel

ExportFormat = Literal["trl", "jsonl-tree"]
FORMATS: tuple[ExportFormat, ...] = ("trl", "jsonl-tree")


def trl_row(solution: LabelledSolution) -> dict[str, Any]:
    """One labelled solution. A step is exported without its delimiter: the trainer joins
    the completions with its own step separator."""
    return {
        "prompt": solution.problem,
        "completions": [text.strip() for text in solution.steps],
        "labels": [label.hard for label in solution.labels],
        "soft_labels": [label.soft for label in solution.labels],
        "job_id": str(solution.job_id), "line": solution.line,
        "source_job_id": str(solution.source_job_id) if solution.source_job_id else None,
        "candidate": solution.candidate, "correct": solution.correct,
        "method": solution.labels[0].method,
    }


def tree_rows(solutions: Iterable[LabelledSolution]) -> Iterator[dict[str, Any]]:
    """One object per problem: its labelled solutions as paths of steps with their
    estimates (the share of rollouts that reached the gold, and how many ran)."""
    current: dict[str, Any] | None = None
    for solution in solutions:
        if current is None or current["job_id"] != str(solution.job_id):
            if current is not None:
                yield current
            current = {"job_id": str(solution.job_id), "line": solution.line,
                       "question": solution.problem, "gold": solution.gold,
                       "method": solution.labels[0].method, "solutions": []}
        current["solutions"].append({
            "candidate": solution.candidate, "correct": solution.correct,
            "steps": [_tree_step(text, label)
                      for text, label in zip(solution.steps, solution.labels, strict=True)],
        })
    if current is not None:
        yield current


def _tree_step(text: str, label: StepLabel) -> dict[str, Any]:
    if label.method == "mcts":  # visits and Q-value, not rollout counts
        return {"text": text, "visits": label.rollouts, "q_value": label.soft,
                "label": label.hard}
    return {"text": text, "rollouts": label.rollouts, "successes": label.successes,
            "mc_value": label.soft, "label": label.hard}


def export_rows(solutions: Iterable[LabelledSolution], fmt: ExportFormat
                ) -> Iterator[dict[str, Any]]:
    if fmt == "trl":
        return (trl_row(solution) for solution in solutions)
    return tree_rows(solutions)
