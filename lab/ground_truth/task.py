"""The ground-truth task: a problem's parameters, the problem text that states them, the
text of a step (which says whether the step is sound), and datasets of mixed difficulty."""

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# The problem text states the parameters, so a dataset can mix difficulties and the
# engine needs nothing but the prompt.
_NUMBER = r"\d+(?:\.\d+)?(?:e-?\d+)?"
_SPEC = re.compile(
    rf"Ground-truth task (?P<key>\S+): p=(?P<p>{_NUMBER}) steps=(?P<steps>\d+) "
    rf"answer=(?P<answer>[^\s,:]+) wrong=(?P<wrong>[^\s,:]+:{_NUMBER}(?:,[^\s,:]+:{_NUMBER})*)"
)
# A step names its number and whether the solution is still sound after it, and carries
# a nonce, so that no two branches write the same path (a verifier scores each afresh).
STEP = re.compile(r"Step (?P<number>\d+): [^\n]*?\((?P<label>ok|off)\) \[(?P<nonce>[0-9a-f]{8})\]")
SOUND, UNSOUND = "ok", "off"


@dataclass(frozen=True)
class TaskSpec:
    key: str  # names the problem; mixed into every random draw about it
    p: float  # a step from a sound prefix is sound with probability p
    steps: int  # L: steps in every solution
    answer: str  # the gold answer, reached by a sound solution
    wrong: tuple[tuple[str, float], ...]  # wrong answers and their weights (sum 1)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0 or self.steps < 1 or not self.wrong:
            raise ValueError(f"impossible ground-truth task {self}")
        if abs(sum(w for _, w in self.wrong) - 1.0) > 1e-6:
            raise ValueError("the weights of the wrong answers must sum to 1")

    @property
    def solve_rate(self) -> float:
        """Probability that one sample ends with the gold answer: p ** L."""
        return self.p**self.steps

    def problem_text(self) -> str:
        wrong = ",".join(f"{answer}:{weight:g}" for answer, weight in self.wrong)
        return (f"Ground-truth task {self.key}: p={self.p:g} steps={self.steps} "
                f"answer={self.answer} wrong={wrong}. Write the solution step by step.")

    @classmethod
    def find(cls, text: str) -> "TaskSpec | None":
        """The task a text states (a problem, or a prompt that quotes one), or None."""
        found = _SPEC.search(text)
        if found is None:
            return None
        wrong = tuple(
            (answer, float(weight))
            for answer, _, weight in (item.partition(":") for item in found["wrong"].split(","))
        )
        return cls(found["key"], float(found["p"]), int(found["steps"]), found["answer"], wrong)


def step_text(number: int, sound: bool, nonce: int, answer: str | None = None) -> str:
    """One step; the last one (with an answer) boxes it."""
    label = SOUND if sound else UNSOUND
    body = f"so the answer is \\boxed{{{answer}}}" if answer is not None else (
        "this follows" if sound else "this slips")
    return f"Step {number}: {body} ({label}) [{nonce:08x}]"


@dataclass(frozen=True)
class Level:
    """A difficulty level of a generated dataset: its p, steps and wrong answers."""

    p: float
    steps: int = 4
    wrong_weights: tuple[float, ...] = (0.5, 0.3, 0.2)


# From nearly always right to nearly never: majority voting solves levels 1-2 in the limit
# and not 3-5 (the likeliest wrong answer outvotes the gold one there), while best-of-N
# with a good verifier keeps climbing on all of them.
LEVELS = {1: Level(0.95), 2: Level(0.85), 3: Level(0.72), 4: Level(0.6), 5: Level(0.45)}


def make_spec(key: str, level: Level, rng: random.Random) -> TaskSpec:
    """A task at this level with its own gold and wrong answers (distinct integers)."""
    answers = rng.sample(range(10, 100), 1 + len(level.wrong_weights))
    wrong = tuple(zip(map(str, answers[1:]), level.wrong_weights, strict=True))
    return TaskSpec(key, level.p, level.steps, str(answers[0]), wrong)


def make_dataset(
    count: int, levels: dict[int, Level] | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """Rows of a dataset (MATH-500's shape: problem, answer, level), levels taking turns."""
    levels = levels or LEVELS
    rng = random.Random(seed)
    order = sorted(levels)
    rows = []
    for i in range(count):
        number = order[i % len(order)]
        spec = make_spec(f"{seed}-{i}", levels[number], rng)
        rows.append({"problem": spec.problem_text(), "answer": spec.answer, "level": number,
                     "custom_id": spec.key})
    return rows


def specs_of(rows: Iterable[dict[str, Any]]) -> list[TaskSpec]:
    specs = [TaskSpec.find(row["problem"]) for row in rows]
    if any(spec is None for spec in specs):
        raise ValueError("a row is not a ground-truth task")
    return [spec for spec in specs if spec is not None]


def sound_path(steps: Sequence[str]) -> list[tuple[str, bool]]:
    """(step text, sound?) for each step of a path that is a ground-truth step."""
    return [(m[0], m["label"] == SOUND) for text in steps for m in STEP.finditer(text)]
