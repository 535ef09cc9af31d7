"""The policy model judges its own steps: score = P("Yes") / (P("Yes") + P("No"))."""

from collections.abc import Sequence

from ttcq.worker.engines.base import Engine
from ttcq.worker.verifiers.base import VerifierOutput
from ttcq.worker.verifiers.token_judge import judge_steps

JUDGE_SYSTEM = "You check math solutions. Answer with one word: Yes or No."


class SelfJudgeVerifier:
    name = "self_judge"

    def __init__(self, engine: Engine):
        self.engine = engine
        self.yes_id = engine.tokenize("Yes")[0]
        self.no_id = engine.tokenize("No")[0]

    def _prompt(self, question: str, steps: Sequence[str]) -> list[int]:
        # The problem and earlier steps come first, so queries for consecutive steps of
        # one candidate share a prefix the engine can reuse.
        shown = "\n\n".join(s.strip() for s in steps)
        user = (
            f"Problem: {question}\n\nSolution so far:\n{shown}\n\n"
            "Is the last step of this solution correct?"
        )
        return self.engine.chat_prompt(
            [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]
        )

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        return judge_steps(self.engine, self._prompt, self.yes_id, self.no_id, question,
                           candidates, last_only=last_only)
