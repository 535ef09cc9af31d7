"""Build a verifier by name; unknown names are an error, never a silent default."""

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ttcq.worker.engines.base import Engine
from ttcq.worker.engines.metered import MeteredEngine
from ttcq.worker.verifiers.base import NoVerifier, Verifier
from ttcq.worker.verifiers.prm import LMHeadPRM, PRMFormat
from ttcq.worker.verifiers.self_judge import SelfJudgeVerifier

if TYPE_CHECKING:
    from ttcq.worker.verifiers.classifier_prm import ClassifierPRM
    from ttcq.worker.verifiers.orm import OutcomeRewardModel

KNOWN = "self_judge, checker, prm, orm, classifier_prm, none"


@dataclass(frozen=True)
class ServedVerifiers:
    """The verifier servers a worker was given; shared by all its searches."""

    prm_engine: Engine | None = None  # None: the policy engine judges in the PRM's format
    prm_format: PRMFormat = "rlhflow"
    orm: "OutcomeRewardModel | None" = None
    classifier_prm: "ClassifierPRM | None" = None

    def guarded(self, before_call: Callable[[], None]) -> "ServedVerifiers":
        """A copy whose PRM calls run before_call first (the job's cancellation check)."""
        if self.prm_engine is None:
            return self
        return replace(self, prm_engine=MeteredEngine(self.prm_engine, before_call))

    def close(self) -> None:
        """Release the servers' connections; the verifiers are not used afterwards."""
        if self.prm_engine is not None:
            self.prm_engine.close()
        for model in (self.orm, self.classifier_prm):
            if model is not None:
                model.server.close()


def make_verifier(name: str, engine: Engine, served: ServedVerifiers | None = None) -> Verifier:
    served = served or ServedVerifiers()
    if name == "self_judge":
        return SelfJudgeVerifier(engine)
    if name == "checker":
        from ttcq.worker.verifiers.checker import CheckerVerifier

        return CheckerVerifier()
    if name == "prm":
        return LMHeadPRM(served.prm_engine or engine, served.prm_format)
    if name == "orm":
        if served.orm is None:
            raise ValueError("verifier orm needs an outcome reward model server (TTCQ_ORM_URL)")
        return served.orm
    if name == "classifier_prm":
        if served.classifier_prm is None:
            raise ValueError("verifier classifier_prm needs a token-classification PRM server "
                             "(TTCQ_CLASSIFIER_PRM_URL)")
        return served.classifier_prm
    if name == "none":
        return NoVerifier()
    raise ValueError(f"unknown verifier {name!r}; known: {KNOWN}")
