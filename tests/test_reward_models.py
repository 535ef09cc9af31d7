"""Outcome reward models on the real servers: SGLang's /classify (--is-embedding) and
vLLM's /pooling (--runner pooling), serving a SmolLM2-135M sequence classifier with a
seeded random head (a stand-in: its scores mean nothing, its protocol is real)."""

from collections.abc import Iterator

import pytest

from lab.servers import RunningServer, server_paths, sglang_server, vllm_server
from tests.utils.jobs import job_of, make_batch
from ttcq.db.models import JobCost
from ttcq.worker.engines.hf_tokenizer import HFTokenizer
from ttcq.worker.engines.http import ServerClient
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.service import SessionFactory, process_job
from ttcq.worker.verifiers.factory import ServedVerifiers
from ttcq.worker.verifiers.orm import OutcomeRewardModel

# A real server starts within the first test that needs it: minutes on a loaded machine.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

QUESTION = "What is 6 * 7?"
CANDIDATES = [["6 * 7 = 42.\n\n", "The answer is \\boxed{42}."], ["6 * 7 = 48. \\boxed{48}"]]


@pytest.fixture(scope="module")
def reward_folder() -> str:
    return server_paths()["TTCQ_REWARD_MODEL_DIR"]


@pytest.fixture(scope="module")
def sglang_rm(reward_folder: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcomeRewardModel]:
    log = tmp_path_factory.mktemp("servers") / "sglang-rm.log"
    with sglang_server(reward_folder, log, embedding=True) as server:
        client = ServerClient(server.url, name="sglang reward model")
        yield OutcomeRewardModel(client, HFTokenizer(reward_folder), "sglang")
        client.close()


@pytest.fixture(scope="module")
def vllm_rm(reward_folder: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutcomeRewardModel]:
    log = tmp_path_factory.mktemp("servers") / "vllm-rm.log"
    with vllm_server(reward_folder, log, name="rm", pooling=True) as server:
        client = ServerClient(server.url, name="vllm reward model")
        yield OutcomeRewardModel(client, HFTokenizer(reward_folder), "vllm", model="rm")
        client.close()


def _check_scores(rm: OutcomeRewardModel) -> None:
    out = rm.score(QUESTION, CANDIDATES)
    first, second = out.scores
    assert len(first) == 2 and len(second) == 1  # the outcome score on every step
    assert first[0] == first[1] and all(0.0 < s < 1.0 for s in first + second)
    assert first[0] != second[0]  # different solutions, different scores
    again = rm.score(QUESTION, CANDIDATES[:1], last_only=True)
    # Alone or in a batch, the same score up to bf16 rounding.
    assert again.scores == [[pytest.approx(first[0], abs=0.01)]]
    assert out.usage.prompt_tokens > 20 and out.usage.calls == 1


def test_sglang_classify_scores_each_candidate(sglang_rm: OutcomeRewardModel) -> None:
    _check_scores(sglang_rm)


def test_vllm_pooling_scores_each_candidate(vllm_rm: OutcomeRewardModel) -> None:
    _check_scores(vllm_rm)


def test_both_servers_give_the_same_score(sglang_rm: OutcomeRewardModel,
                                          vllm_rm: OutcomeRewardModel) -> None:
    """Same weights, same prompt tokens: the same probability, up to bf16 rounding."""
    a = sglang_rm.score(QUESTION, CANDIDATES).scores
    b = vllm_rm.score(QUESTION, CANDIDATES).scores
    assert [s[0] for s in a] == pytest.approx([s[0] for s in b], abs=0.03)


def test_best_of_n_with_an_orm_counts_its_tokens_as_verification(
    sglang_rm: OutcomeRewardModel, sglang: RunningServer, sessions: SessionFactory,
) -> None:
    engine = SGLangEngine(sglang.url)
    [job_id] = make_batch(sessions, strategy="best_of_n", verifier="orm", n=3, max_tokens=32)
    outcome = process_job(sessions=sessions, job_id=job_id, engine=engine, worker_name="t",
                          lease_seconds=60, max_attempts=1, served=ServedVerifiers(orm=sglang_rm))
    engine.close()
    assert outcome == "succeeded", job_of(sessions, job_id).error
    with sessions() as session:
        cost = session.get(JobCost, job_id)
        assert cost is not None and cost.verifier_tokens > 0 and cost.verifier_calls == 1
