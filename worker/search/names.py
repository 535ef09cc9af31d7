"""The strategies' names, in one place: the config's type, the CLI's choices and the
groups the policy and its fit reason about all read them from here."""

from typing import Literal

StrategyName = Literal[
    "majority", "best_of_n", "weighted_best_of_n", "beam_search", "dvts", "lookahead",
    "self_refine", "compute_optimal", "particle_filtering", "rebase", "mcts",
    "math_shepherd", "omega", "deepconf",
]
# Independent samples: the first k of n are a run of k (a probe continues into them).
SAMPLING_STRATEGIES: tuple[StrategyName, ...] = ("majority", "best_of_n", "weighted_best_of_n")
TREE_STRATEGIES: tuple[StrategyName, ...] = ("beam_search", "dvts", "lookahead")
# Not searches for an answer but step labellers: rollouts from each step prefix of a
# solution, graded against the gold (worker.search.labels).
LABEL_STRATEGIES: tuple[StrategyName, ...] = ("math_shepherd", "omega")
