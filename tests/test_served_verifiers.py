"""LM-head PRMs through the real SGLang server: both prompt formats, a candidate's steps
scored as one sequence, a PRM on a server of its own chosen by settings."""


import pytest

from lab.recording import SGLangRecorder
from lab.servers import RunningServer
from ttcq.settings import Settings
from ttcq.worker.backends import make_served_verifiers
from ttcq.worker.engines.prefix_chains import is_prefix
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.verifiers.factory import ServedVerifiers, make_verifier
from ttcq.worker.verifiers.prm import LMHeadPRM
from ttcq.worker.verifiers.token_judge import good_share

# A real server starts within the first test that needs it: minutes on a loaded machine.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
STEPS = ["Tom starts with 3 apples.\n\n", "He buys 4 more, so 3 + 4 = 7.\n\n",
         "The answer is \\boxed{7}."]


@pytest.mark.parametrize("fmt", ["rlhflow", "math_shepherd"])
def test_each_steps_prompt_extends_the_one_before(fmt: str, sglang_engine: SGLangEngine) -> None:
    prm = LMHeadPRM(sglang_engine, fmt)  # type: ignore[arg-type]
    prompts = [prm.prompt(QUESTION, STEPS[: k + 1]) for k in range(len(STEPS))]
    assert all(is_prefix(a, b) for a, b in zip(prompts, prompts[1:], strict=False))
    text = sglang_engine.detokenize(prompts[-1])
    if fmt == "math_shepherd":
        assert text.count("ки") == 3 and text.endswith("ки")
    else:
        assert text.count("assistant\n+\n") == 2  # earlier steps' turns say "+"
        assert text.endswith("assistant\n")  # the last step is judged here


@pytest.mark.parametrize("fmt", ["rlhflow", "math_shepherd"])
def test_a_candidates_steps_cost_one_sequence(
    fmt: str, sglang_recorded: tuple[SGLangEngine, SGLangRecorder],
) -> None:
    engine, client = sglang_recorded
    prm = LMHeadPRM(engine, fmt)  # type: ignore[arg-type]
    out = prm.score(QUESTION, [STEPS, STEPS[:2]])
    assert [len(s) for s in out.scores] == [3, 2]
    assert all(0.0 < s < 1.0 for scores in out.scores for s in scores)
    # Both candidates' step prompts form one chain here (the second is a prefix).
    assert len(client.logprob_metas) == 1
    prompt, cached, completion = client.reported(logprobs=True)
    assert (out.usage.prompt_tokens, out.usage.cached_tokens, out.usage.completion_tokens) == \
        (prompt, cached, completion)
    alone = prm.score(QUESTION, [STEPS[:2]]).scores[0]
    assert alone == pytest.approx(out.scores[0][:2], abs=0.05)


class Untouchable(SGLangEngine):
    """Test double for a policy engine that must not be asked to judge."""

    def next_token_logprobs(self, *args: object, **kwargs: object) -> list:  # type: ignore[override]
        raise AssertionError("the policy engine judged, not the PRM server")


def test_a_prm_server_of_its_own_comes_from_settings(sglang: RunningServer) -> None:
    settings = Settings(prm_url=sglang.url, prm_format="math_shepherd")
    served = make_served_verifiers(settings)
    policy = Untouchable(sglang.url)
    verifier = make_verifier("prm", policy, served)
    scores = verifier.score(QUESTION, [STEPS]).scores
    assert len(scores[0]) == 3 and verifier.format == "math_shepherd"  # type: ignore[attr-defined]
    policy.close()
    assert served.prm_engine is not None
    served.prm_engine.close()


def test_an_orm_without_a_server_is_a_clear_error(sglang_engine: SGLangEngine) -> None:
    with pytest.raises(ValueError, match="TTCQ_ORM_URL"):
        make_verifier("orm", sglang_engine, ServedVerifiers())


def test_plus_share_is_stable() -> None:
    assert good_share(-1000.0, -1001.0) == pytest.approx(0.7310585)
    assert good_share(float("-inf"), float("-inf")) == 0.5
