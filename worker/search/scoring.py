"""Pure scoring: step-score aggregation and final-answer selection among candidates."""

import math
from collections import defaultdict
from collections.abc import Sequence

from ttcq.worker.search.config import Aggregation, Selection
from ttcq.worker.search.types import Candidate


def aggregate(step_scores: Sequence[float], method: Aggregation) -> float:
    if not step_scores:
        return 0.0
    if method == "last":
        return step_scores[-1]
    if method == "min":
        return min(step_scores)
    if method == "prod":
        return math.prod(step_scores)
    return sum(step_scores) / len(step_scores)


def _score(c: Candidate) -> float:
    return c.score if c.score is not None else 0.0


def select(candidates: Sequence[Candidate], method: Selection) -> int:
    """Index of the chosen candidate. Only finished ones with an answer vote; a length
    cut-off is chosen only when nothing finished, and then it carries no answer."""
    if not candidates:
        raise ValueError("no candidates to select from")
    voters = [i for i, c in enumerate(candidates) if c.finished and c.canonical is not None]
    if not voters:
        pool = [i for i, c in enumerate(candidates) if c.finished] or range(len(candidates))
        return max(pool, key=lambda i: (_score(candidates[i]), -i))
    if method == "naive":
        return max(voters, key=lambda i: (_score(candidates[i]), -i))
    weight: dict[str, float] = defaultdict(float)
    first_seen: dict[str, int] = {}
    for i in voters:
        key = candidates[i].canonical
        assert key is not None
        weight[key] += _score(candidates[i]) if method == "weighted" else 1.0
        first_seen.setdefault(key, i)
    # Ties go to the answer seen first, so the choice is reproducible.
    best = max(weight, key=lambda k: (weight[k], -first_seen[k]))
    same = [i for i in voters if candidates[i].canonical == best]
    return max(same, key=lambda i: (_score(candidates[i]), -i))


def budget_points(n_max: int, group_size: int = 1) -> list[int]:
    """Budgets 1, 2, 4, … up to n_max (and n_max itself) at which a curve is read."""
    points, n = [], group_size
    while n < n_max:
        points.append(n)
        n *= 2
    points.append(n_max)
    return points


def budget_curve(
    candidates: Sequence[Candidate], method: Selection, n_max: int, group_size: int = 1
) -> dict[int, int]:
    """For each budget n, the index of the candidate chosen among the first n/group_size
    groups (samples, or DVTS subtrees of group_size leaves each)."""
    curve = {}
    for n in budget_points(n_max, group_size):
        pool = [c for c in candidates if c.group < n // group_size]
        if pool:
            chosen = pool[select(pool, method)]
            curve[n] = candidates.index(chosen)
    return curve
