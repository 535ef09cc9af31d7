"""The verifier interface: batched step scores in [0, 1], with the tokens it cost."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ttcq.worker.engines.base import Usage


@dataclass
class VerifierOutput:
    # scores[i][j]: step j of candidate i (only the last step's score with last_only).
    scores: list[list[float]]
    usage: Usage = field(default_factory=Usage)


class Verifier(Protocol):
    name: str

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        """Score each step of each candidate (a candidate is its list of step texts)."""
        ...


class NoVerifier:
    """For strategies that only vote: every step is neutral and costs nothing."""

    name = "none"

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        return VerifierOutput([[0.5] * (1 if last_only else len(c)) for c in candidates])
