"""Exact accuracies on the ground-truth task, from the model's definition alone (no code of
worker.search): majority voting by enumerating vote counts, best-of-N by integrating the
score distributions, weighted best-of-N by enumerating vote counts and convolving scores.

A candidate's aggregated score has a known distribution. A judged step scores Beta(q, 1)
(CDF x**q) while the path is sound and Beta(1, q) after it slipped, independently per step;
an unsound solution first slipped at step e with probability p**(e-1) * (1-p)."""

import math
from collections.abc import Iterator

import numpy as np

from lab.ground_truth.task import TaskSpec

GRID = 400  # score bins for weighted best-of-N (an error of order 1/GRID**2)
FINE_GRID = 20_001  # points for best-of-N's one-dimensional integral


def answer_distribution(spec: TaskSpec) -> list[float]:
    """P(gold), then P(each wrong answer), for one sample."""
    right = spec.solve_rate
    return [right] + [(1.0 - right) * weight for _, weight in spec.wrong]


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def _multinomial_log(counts: tuple[int, ...], probs: list[float]) -> float:
    log = math.lgamma(sum(counts) + 1)
    for count, prob in zip(counts, probs, strict=True):
        if count and prob == 0.0:
            return -math.inf
        log += count * math.log(prob) - math.lgamma(count + 1) if count else 0.0
    return log


def majority_accuracy(spec: TaskSpec, n: int) -> float:
    """P(the gold answer wins a vote of n samples). ttcq gives a tie to the answer seen
    first; with exchangeable samples each of the k tied answers is first with chance 1/k."""
    probs = answer_distribution(spec)
    total = 0.0
    for counts in _compositions(n, len(probs)):
        top = max(counts)
        if counts[0] == top:
            total += math.exp(_multinomial_log(counts, probs)) / counts.count(top)
    return total


def score_cdfs(
    spec: TaskSpec, quality: float, aggregation: str, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CDFs at x of the aggregated score of a right and of a wrong candidate."""
    q, p, steps = quality, spec.p, spec.steps
    sound_above, slipped_above = 1.0 - x**q, (1.0 - x) ** q  # P(one step's score > x)
    if aggregation == "last":
        return 1.0 - sound_above, 1.0 - slipped_above
    if aggregation != "min":
        raise ValueError(f"no exact reference for aggregation {aggregation!r}")
    right = 1.0 - sound_above**steps
    wrong_above = np.zeros_like(x)
    for e in range(1, steps + 1):  # first slip at step e
        weight = p ** (e - 1) * (1.0 - p)
        wrong_above += weight * sound_above ** (e - 1) * slipped_above ** (steps - e + 1)
    unsound = 1.0 - spec.solve_rate
    wrong = 1.0 - wrong_above / unsound if unsound > 0 else np.ones_like(x)
    return right, wrong


def best_of_n_accuracy(spec: TaskSpec, quality: float, aggregation: str, n: int) -> float:
    """P(the best-scored of n samples is right) = c * integral of n G**(n-1) dF_right,
    with G the score CDF of any one sample (scores are continuous: no ties)."""
    x = np.linspace(0.0, 1.0, FINE_GRID)
    right, wrong = score_cdfs(spec, quality, aggregation, x)
    c = spec.solve_rate
    any_sample = c * right + (1.0 - c) * wrong
    mid = 0.5 * (any_sample[1:] + any_sample[:-1])
    return float(c * np.sum(np.diff(right) * n * mid ** (n - 1)))


def _sum_pmfs(cdf: np.ndarray, n: int) -> list[np.ndarray]:
    """pmf of the sum of m scores, m = 0..n, on a grid of half bins: index 2*I + m for a sum
    of m bin midpoints of total bin index I, so sums of different counts compare exactly."""
    bins = np.diff(cdf)
    out, current = [np.array([1.0])], np.array([1.0])
    for m in range(1, n + 1):
        current = np.convolve(current, bins)
        spread = np.zeros(2 * len(current) - 1 + m)
        spread[m : m + 2 * len(current) - 1 : 2] = current
        out.append(spread)
    return out


def _below(pmf: np.ndarray, length: int) -> np.ndarray:
    """P(sum < v) + P(sum = v) / 2 at each half-bin index v < length (ties split)."""
    padded = np.zeros(length)
    padded[: min(length, len(pmf))] = pmf[:length]
    # Mass past `length` lies above every v considered here.
    return np.cumsum(padded) - padded / 2.0


def weighted_best_of_n_accuracy(
    spec: TaskSpec, quality: float, aggregation: str, n: int
) -> float:
    """P(the gold answer has the largest sum of scores over n samples)."""
    x = np.linspace(0.0, 1.0, GRID + 1)
    right, wrong = score_cdfs(spec, quality, aggregation, x)
    right_sums, wrong_sums = _sum_pmfs(right, n), _sum_pmfs(wrong, n)
    below: dict[tuple[int, int], np.ndarray] = {}
    probs = answer_distribution(spec)
    total = 0.0
    for counts in _compositions(n, len(probs)):
        if counts[0] == 0:
            continue
        gold = right_sums[counts[0]]
        win = gold.copy()
        for count in filter(None, counts[1:]):
            if (count, counts[0]) not in below:
                below[count, counts[0]] = _below(wrong_sums[count], len(gold))
            win *= below[count, counts[0]]
        total += math.exp(_multinomial_log(counts, probs)) * float(win.sum())
    return total
