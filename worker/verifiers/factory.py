"""Build a verifier by name; unknown names are an error, never a silent default."""

from worker.engines.base import Engine
from worker.verifiers.base import NoVerifier, Verifier
from worker.verifiers.self_judge import SelfJudgeVerifier


def make_verifier(name: str, engine: Engine) -> Verifier:
    if name == "self_judge":
        return SelfJudgeVerifier(engine)
    if name == "checker":
        from worker.verifiers.checker import CheckerVerifier

        return CheckerVerifier()
    if name == "none":
        return NoVerifier()
    raise ValueError(f"unknown verifier {name!r}; known: self_judge, checker, none")
