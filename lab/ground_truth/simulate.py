"""Monte Carlo references for the tree searches on the ground-truth task, written from the
model's and the algorithms' published definitions alone (no code of worker.search), many
searches at once as numpy arrays (one row per simulated search).

Every solution of the task has exactly L steps, so all beams close together at depth L.
Scores: Beta(q, 1) for a step whose path is sound, Beta(1, q) once it slipped. Ties
between equal aggregated scores (min aggregation clamps siblings to their parent's score)
go to the earlier beam, candidate order being the order in which beams closed."""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lab.ground_truth.task import TaskSpec


@dataclass
class Model:
    spec: TaskSpec
    quality: float
    aggregation: str
    rng: np.random.Generator
    noisy_steps: int = 0  # the first steps of a path are judged by a coin (quality 1)

    def __post_init__(self) -> None:
        if self.aggregation not in ("min", "last"):
            raise ValueError(f"no simulation for aggregation {self.aggregation!r}")

    def steps(self, sound: np.ndarray) -> np.ndarray:
        """Soundness after one more sampled step."""
        return sound & (self.rng.random(sound.shape) < self.spec.p)

    def scores(self, sound: np.ndarray, depth: int | None = None) -> np.ndarray:
        """Scores of the depth-th steps of paths (depth None: past the noisy ones)."""
        quality = 1.0 if depth is not None and depth <= self.noisy_steps else self.quality
        high = self.rng.random(sound.shape) ** (1.0 / quality)
        return np.where(sound, high, 1.0 - high)

    def aggregate(self, previous: np.ndarray | None, score: np.ndarray) -> np.ndarray:
        if previous is None or self.aggregation == "last":
            return score
        return np.minimum(previous, score)


@dataclass
class Candidates:
    """Closed paths in the order they closed: aggregated score, right answer or not."""

    scores: list[np.ndarray] = field(default_factory=list)
    right: list[np.ndarray] = field(default_factory=list)

    def add(self, scores: np.ndarray, right: np.ndarray) -> None:
        self.scores.append(scores)
        self.right.append(right)

    def accuracy(self) -> float:
        """Naive selection: the best score wins, the earlier candidate on a tie."""
        scores, right = np.concatenate(self.scores, axis=1), np.concatenate(self.right, axis=1)
        chosen = np.argmax(scores, axis=1)
        return float(right[np.arange(len(right)), chosen].mean())


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest per row (earlier on ties), in column order."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return np.sort(order, axis=1)


def _look_ahead(model: Model, sound: np.ndarray, depth: int, k: int) -> tuple[np.ndarray, bool]:
    """(soundness of the greedy tip, whether the tip is a finished solution). Greedy takes
    the likeliest step: sound from a sound prefix iff p >= 0.5."""
    ahead = min(depth + k, model.spec.steps) - depth
    if ahead == 0:
        return sound, False
    greedy_sound = sound & (model.spec.p >= 0.5)
    return greedy_sound, depth + ahead == model.spec.steps


def beam_search(
    model: Model, n: int, width: int, searches: int, lookahead: int = 0
) -> float:
    """Accuracy of beam search with budget n, keeping n/width beams of width children each,
    each step scored after `lookahead` greedy steps."""
    steps, keep = model.spec.steps, n // width
    sound = model.steps(np.ones((searches, n), dtype=bool))
    agg: np.ndarray | None = None
    candidates = Candidates()
    for depth in range(1, steps + 1):
        tip_sound, tip_finished = _look_ahead(model, sound, depth, lookahead)
        tip_depth = min(depth + lookahead, steps)  # the judge reads the path to the tip
        agg = model.aggregate(agg, model.scores(tip_sound, tip_depth))
        if tip_finished:  # a greedy continuation that reached an answer competes too
            candidates.add(agg, tip_sound)
        if depth == steps:
            candidates.add(agg, sound)
            break
        kept = _top(agg, keep)
        parents = np.take_along_axis(sound, kept, axis=1).repeat(width, axis=1)
        agg = np.take_along_axis(agg, kept, axis=1).repeat(width, axis=1)
        sound = model.steps(parents)
    return candidates.accuracy()


def dvts(model: Model, n: int, width: int, searches: int) -> dict[int, float]:
    """Accuracy of DVTS at budgets width, 2*width, ... n: n/width subtrees, each keeping
    the best of `width` children per step; the best final leaf over the subtrees wins."""
    trees = n // width
    sound = np.ones((searches, trees), dtype=bool)
    agg: np.ndarray | None = None
    for depth in range(1, model.spec.steps + 1):
        children = model.steps(sound.repeat(width, axis=1))
        parent_agg = None if agg is None else agg.repeat(width, axis=1)
        child_agg = model.aggregate(parent_agg, model.scores(children, depth))
        best = np.argmax(child_agg.reshape(searches, trees, width), axis=2)
        pick = (np.arange(trees) * width + best)
        sound = np.take_along_axis(children, pick, axis=1)
        agg = np.take_along_axis(child_agg, pick, axis=1)
    assert agg is not None
    curve = {}
    budget = width
    while True:
        used = min(budget, n) // width
        chosen = np.argmax(agg[:, :used], axis=1)
        curve[min(budget, n)] = float(sound[np.arange(searches), chosen].mean())
        if budget >= n:
            return curve
        budget *= 2


def _copies(parents: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row, the parent column of each of sum(counts) children, parents in order
    (counts sum to the same number in every row)."""
    ends = np.cumsum(counts, axis=1)
    slots = np.arange(int(ends[0, -1]))
    return (slots[None, :, None] >= ends[:, None, :]).sum(axis=2)


def _softmax(agg: np.ndarray, temperature: float) -> np.ndarray:
    weights = np.exp((agg - agg.max(axis=1, keepdims=True)) / temperature)
    return weights / weights.sum(axis=1, keepdims=True)


def _sampled_tree(model: Model, n: int, searches: int,
                  counts_of: Callable[[np.ndarray], np.ndarray]) -> float:
    """A search that keeps n paths per depth, each depth's n children spread over the
    previous depth's paths by counts_of(aggregated scores); all paths close at depth L
    and the best final score wins."""
    sound = model.steps(np.ones((searches, n), dtype=bool))
    agg: np.ndarray | None = None
    for depth in range(1, model.spec.steps + 1):
        agg = model.aggregate(agg, model.scores(sound, depth))
        if depth == model.spec.steps:
            break
        parents = _copies(sound, counts_of(agg))
        sound = model.steps(np.take_along_axis(sound, parents, axis=1))
        agg = np.take_along_axis(agg, parents, axis=1)
    assert agg is not None
    candidates = Candidates()
    candidates.add(agg, sound)
    return candidates.accuracy()


def particle_filtering(model: Model, n: int, temperature: float, searches: int) -> float:
    """One round of particle filtering (Puri et al. 2025): n particles, each step scored,
    then n multinomial draws by softmax(score / T); a drawn particle's copies each take
    their own next step."""
    def draws(agg: np.ndarray) -> np.ndarray:
        cumulative = np.cumsum(_softmax(agg, temperature), axis=1)
        u = model.rng.random(agg.shape)
        picks = np.minimum((u[..., None] > cumulative[:, None, :]).sum(axis=2), n - 1)
        return (picks[..., None] == np.arange(n)).sum(axis=1)

    return _sampled_tree(model, n, searches, draws)


def rebase(model: Model, n: int, temperature: float, searches: int) -> float:
    """REBASE (Wu et al. 2024): each depth's n expansions split over the open paths by
    softmax(score / T), rounded by largest remainder (ties to the earlier path)."""
    def balanced(agg: np.ndarray) -> np.ndarray:
        shares = n * _softmax(agg, temperature)
        widths = np.floor(shares).astype(int)
        order = np.argsort(widths - shares, axis=1, kind="stable")
        rank = np.argsort(order, axis=1)
        left = n - widths.sum(axis=1, keepdims=True)
        return widths + (rank < left)

    return _sampled_tree(model, n, searches, balanced)
