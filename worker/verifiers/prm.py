"""Process reward models with a language-model head, scored through an engine's logprobs:
score of a step = P('+') / (P('+') + P('-')) at the place the PRM was trained to judge it.

- rlhflow (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data): a chat where the first user turn is the
  question and the first step, each later step a user turn of its own, and every earlier
  step's assistant turn a '+'; a step is judged where its assistant turn starts.
- math_shepherd (peiyi9979/math-shepherd-mistral-7b-prm): "question step1 ки\\nstep2 ки..."
  with no chat template; a step is judged right after its tag.

A step's prompt extends the one before it, so an engine can score a candidate's steps as
one sequence (the SGLang engine does)."""

from collections.abc import Sequence
from typing import Literal

from ttcq.worker.engines.base import Engine
from ttcq.worker.verifiers.base import VerifierOutput
from ttcq.worker.verifiers.token_judge import judge_steps

PRMFormat = Literal["rlhflow", "math_shepherd"]
STEP_TAG = "ки"


class LMHeadPRM:
    name = "prm"

    def __init__(self, engine: Engine, fmt: PRMFormat = "rlhflow"):
        self.engine, self.format = engine, fmt
        if fmt == "math_shepherd":  # the pair as the PRM's own code encodes "+ -"
            pair = engine.tokenize("+ -")
            self.plus, self.minus = pair[0], pair[-1]
        else:
            self.plus, self.minus = engine.tokenize("+")[-1], engine.tokenize("-")[-1]

    def prompt(self, question: str, steps: Sequence[str]) -> list[int]:
        """Token ids up to where the last of `steps` is judged."""
        clean = [s.strip() for s in steps]
        if self.format == "math_shepherd":
            shown = "".join(f"{s} {STEP_TAG}\n" for s in clean).rstrip("\n")
            return self.engine.tokenize(f"{question} {shown}")
        messages: list[dict[str, str]] = []
        for i, step in enumerate(clean):
            if i:
                messages.append({"role": "assistant", "content": "+"})
            messages.append({"role": "user", "content": f"{question} {step}" if i == 0 else step})
        return self.engine.chat_prompt(messages)

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        return judge_steps(self.engine, self.prompt, self.plus, self.minus, question,
                           candidates, last_only=last_only)
