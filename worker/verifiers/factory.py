"""Build a verifier by name; unknown names are an error, never a silent default."""

from worker.engines.base import Engine
from worker.verifiers.base import NoVerifier, Verifier
from worker.verifiers.self_judge import SelfJudgeVerifier


def make_verifier(name: str, engine: Engine | None) -> Verifier:
    """engine: the policy model, which self_judge asks (the others need none)."""
    if name == "self_judge":
        if engine is None:
            raise ValueError("the self_judge verifier needs the policy model's engine")
        return SelfJudgeVerifier(engine)
    if name == "checker":
        from worker.verifiers.checker import CheckerVerifier

        return CheckerVerifier()
    if name == "none":
        return NoVerifier()
    raise ValueError(f"unknown verifier {name!r}; known: self_judge, checker, none")
