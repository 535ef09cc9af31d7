"""The check every ground-truth test makes of a search against an independent reference."""

import math
from collections.abc import Iterable
from statistics import mean, pvariance

SDS = 3.5


def assert_mean_agrees(measured: Iterable[float], reference: Iterable[float], what: str) -> None:
    """The measured mean within 3.5 standard errors (of the difference) of the reference's."""
    a, b = [float(x) for x in measured], [float(x) for x in reference]
    sd = math.sqrt(pvariance(a) / len(a) + pvariance(b) / len(b))
    assert abs(mean(a) - mean(b)) <= SDS * sd + 1e-9, (what, mean(a), mean(b), sd)
