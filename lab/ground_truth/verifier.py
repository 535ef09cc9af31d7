"""GroundTruthVerifier: a TEST DOUBLE of a process reward model with known noise.

A step is judged on the path up to it. If the path is still sound, the score is drawn from
Beta(q, 1) (CDF x**q), otherwise from Beta(1, q) (CDF 1 - (1 - x)**q); q >= 1 is the
quality: 1 is a coin (no information), large q a near-perfect judge. The draw is a hash of
(salt, problem, path), so a path gets the same score however often it is judged (like a
deterministic PRM), different paths independent draws, and two verifiers with different
salts independent opinions. Text that is not a ground-truth step scores 0.5.

With noisy_steps = k > 0 the judge cannot tell early in a path, as a PRM that does not yet
see where a solution goes: the first k steps of a path are judged by a coin (quality 1),
the later ones at quality q."""

import hashlib
from collections.abc import Sequence

from lab.ground_truth.task import TaskSpec, sound_path
from ttcq.worker.engines.base import Usage
from ttcq.worker.verifiers.base import VerifierOutput

NEUTRAL = 0.5


def uniform(*parts: str) -> float:
    """A number in (0, 1), uniform over inputs: a hash of the parts."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


class GroundTruthVerifier:
    def __init__(self, quality: float = 4.0, salt: str = "prm", noisy_steps: int = 0):
        if quality < 1.0:
            raise ValueError("quality must be >= 1 (1: scores carry no information)")
        if noisy_steps < 0:
            raise ValueError("noisy_steps must be >= 0 (0: every step judged at quality q)")
        self.quality, self.salt, self.noisy_steps = quality, salt, noisy_steps
        # What rescores record: judges of another quality or salt are other verifiers.
        self.name = (f"ground_truth q={quality:g}" + ("" if salt == "prm" else f" {salt}")
                     + (f" noisy_steps={noisy_steps}" if noisy_steps else ""))

    def quality_at(self, depth: int) -> float:
        """The quality at which the depth-th step of a path (1 the first) is judged."""
        return 1.0 if depth <= self.noisy_steps else self.quality

    def path_score(self, problem_key: str, path: Sequence[tuple[str, bool]]) -> float:
        """Score of the last step of a path of (step text, sound?) pairs."""
        if not path:
            return NEUTRAL
        u = uniform(self.salt, problem_key, *(text for text, _ in path))
        high = u ** (1.0 / self.quality_at(len(path)))
        return high if path[-1][1] else 1.0 - high

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        spec = TaskSpec.find(question)
        key = spec.key if spec else question
        usage = Usage(calls=1 if candidates else 0)
        scores = []
        for steps in candidates:
            first = max(len(steps) - 1, 0) if last_only else 0
            scores.append([self._step(key, steps[: j + 1]) for j in range(first, len(steps))])
            # What a judge model would read: the problem and the path, once per step.
            usage.prompt_tokens += sum(
                len(question) + sum(map(len, steps[: j + 1])) for j in range(first, len(steps))
            )
        return VerifierOutput(scores, usage)

    def _step(self, key: str, steps: Sequence[str]) -> float:
        last = sound_path(steps[-1:])
        return self.path_score(key, sound_path(steps)) if last else NEUTRAL
