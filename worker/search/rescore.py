"""Rescoring: choose a search's answer again from its candidates, with another step-score
aggregation, selection or verifier's step scores, and read the budget curve again, the
way the search itself did (worker.search.run.SearchRun.finish)."""

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ttcq.worker.search.config import Aggregation, SearchConfig, Selection
from ttcq.worker.search.scoring import aggregate, budget_curve, select
from ttcq.worker.search.types import Candidate


def curve_group_size(config: SearchConfig) -> int:
    """Leaves per budget unit of the strategy's curve: a DVTS subtree holds M of them,
    and beam search and REBASE (run per budget) read their curve at N only."""
    if config.strategy == "dvts":
        return config.beam_width
    # Particle filtering's rounds are groups of n (one round reads n, two 2n, ...).
    if config.strategy in ("beam_search", "lookahead", "particle_filtering", "rebase"):
        return config.n
    if config.strategy == "mcts":  # one point, at its simulations
        return config.mcts_simulations
    return 1


@dataclass
class Rescored:
    candidates: list[Candidate]  # with their new scores and the new selection marked
    selected: int
    curve: dict[int, int]  # budget n -> index of the candidate chosen with the first n


def rescore(
    candidates: Sequence[Candidate],
    *,
    aggregation: Aggregation,
    selection: Selection,
    group_size: int,
    step_scores: Sequence[Sequence[float]] | None = None,
) -> Rescored:
    """Candidates scored again (from step_scores when a verifier judged them anew, else
    from their own) and the answer chosen again; the stored candidates are not changed."""
    fresh = []
    for i, c in enumerate(candidates):
        scores = list(step_scores[i]) if step_scores is not None else c.step_scores
        score = aggregate(scores, aggregation) if scores else None
        fresh.append(replace(c, step_scores=scores, score=score, selected=False))
    chosen = select(fresh, selection)
    fresh[chosen].selected = True
    groups = max(c.group for c in fresh) + 1
    return Rescored(fresh, chosen, budget_curve(fresh, selection, groups * group_size, group_size))
