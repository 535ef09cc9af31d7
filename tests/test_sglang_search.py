"""Every strategy on the real SGLang server, through the worker's own path (claim, search,
store in Postgres): the tokens stored equal the tokens the server reported, exactly, and
a `ttcq worker` process driven by settings alone solves a job there."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from lab.recording import SGLangRecorder
from lab.servers import RunningServer
from tests.utils.jobs import assert_stored_as_reported, job_of, make_batch, wait_for_state
from ttcq.db.models import JobCost, JobState
from ttcq.settings import Settings
from ttcq.worker.celery_app import make_celery
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.queue import enqueue_jobs
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem
from ttcq.worker.service import SessionFactory, process_job
from ttcq.worker.verifiers.base import NoVerifier
from ttcq.worker.verifiers.factory import ServedVerifiers

# A real server starts within the first test that needs it: minutes on a loaded machine.
pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
SHORT = {"n": 4, "beam_width": 2, "max_step_tokens": 24, "max_depth": 3, "max_tokens": 64,
         "seed": 3, "system_prompt": "Solve step by step, one short sentence per step, "
         "separated by blank lines. End with \\boxed{answer}."}
STRATEGIES: dict[str, dict[str, Any]] = {
    "majority": {"verifier": "none"},
    "best_of_n": {"verifier": "checker"},
    "weighted_best_of_n": {"verifier": "self_judge"},
    "beam_search": {"verifier": "prm"},
    "dvts": {"verifier": "checker"},
    "lookahead": {"verifier": "self_judge", "lookahead": 1},
    "self_refine": {"verifier": "none", "rounds": 1},
    "particle_filtering": {"verifier": "self_judge", "pf_rounds": 2},
    "rebase": {"verifier": "prm"},
    "majority_early_stop": {"strategy": "majority", "verifier": "none", "early_stop": 0.5,
                            "early_stop_round": 2, "early_stop_min": 2},
    # The default policy scaled to n=4: the probe, then majority, best-of-N or beam search.
    "compute_optimal": {"verifier": "prm"},
    "math_shepherd": {"verifier": "none", "n": 2, "rollouts": 3},
    "omega": {"verifier": "none", "n": 2, "rollouts": 3},
    # The verifier signal: the probe's 2 samples scored by the PRM, kept by best-of-N.
    "compute_optimal_by_score": {"strategy": "compute_optimal", "verifier": "prm", "policy": {
        "probe": 2, "budget": 4, "difficulty": "verifier", "bins": [
            {"min_confidence": 0.9, "n": 0},
            {"min_confidence": 0.0, "strategy": "weighted_best_of_n", "n": 4}]}},
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_stored_tokens_equal_what_the_server_reported(
    strategy: str, sglang_recorded: tuple[SGLangEngine, SGLangRecorder],
    sessions: SessionFactory,
) -> None:
    engine, client = sglang_recorded
    # A key names a run; its entry may set the strategy itself (majority_early_stop).
    [job_id] = make_batch(sessions, **({"strategy": strategy} | SHORT | STRATEGIES[strategy]))
    outcome = process_job(sessions=sessions, job_id=job_id, engine=engine, worker_name="t",
                          lease_seconds=60, max_attempts=1, served=ServedVerifiers())
    assert outcome == "succeeded", job_of(sessions, job_id).error
    cost = assert_stored_as_reported(sessions, job_id, client)
    assert cost.engine_model == engine.info.model and cost.seeded is False
    assert cost.engine_calls >= 1 and cost.flops > 0


SOLUTION = ("Natalia sold 48 clips in April.\n\nIn May she sold half as many: 48 / 2 = 24.\n\n"
            "Altogether she sold 48 + 24 = 72 clips.\n\nThe answer is \\boxed{72}.")


def test_rollouts_from_one_prefix_share_it_in_the_radix_cache(
    sglang_recorded: tuple[SGLangEngine, SGLangRecorder],
) -> None:
    """Math-Shepherd's R rollouts of a step continue one prefix: the server computes it
    once, and every rollout's prompt is mostly served from its radix cache. A given
    solution of four steps (the server samples unseeded: its own may have one step)."""
    engine, client = sglang_recorded
    problem = Problem("Natalia sold clips to 48 of her friends in April, and then she sold "
                      "half as many clips in May. How many clips did Natalia sell altogether "
                      "in April and May?", "72", solutions=(SOLUTION,))
    config = make_config(**{**SHORT, "strategy": "math_shepherd", "n": 1, "rollouts": 4})
    result = run_search(problem, config, engine, NoVerifier())
    usage = result.trace.usage()
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == \
        client.reported()  # the given solution cost nothing; the rollouts what was reported
    rollouts = [n for n in result.trace.nodes if n.kind == "rollout"]
    prompt = sum(n.prompt_tokens for n in rollouts)
    cached = sum(n.cached_tokens for n in rollouts)
    assert len(rollouts) == 3 * 4 and cached / prompt >= 0.9, (cached, prompt)
    assert [label.rollouts for label in result.labels] == [4, 4, 4, 0]


def _worker_env(db_url: str, redis_url: str, sglang: RunningServer, **extra: str) -> dict[str, str]:
    return {**os.environ, "TTCQ_DATABASE_URL": db_url, "TTCQ_REDIS_URL": redis_url,
            "TTCQ_ENGINE": "sglang", "TTCQ_ENGINE_URL": sglang.url,
            "TTCQ_ENGINE_MODEL": sglang.model, "TTCQ_TASK_TIME_LIMIT": "240",
            "TTCQ_VISIBILITY_TIMEOUT": "300", **extra}


def test_a_worker_configured_for_sglang_solves_a_job(
    sessions: SessionFactory, db_url: str, redis_url: str, sglang: RunningServer,
    tmp_path: Path,
) -> None:
    [job_id] = make_batch(sessions, strategy="beam_search", verifier="prm", **SHORT)
    app = make_celery(Settings(database_url=db_url, redis_url=redis_url))
    enqueue_jobs(app, [job_id])
    app.close()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "ttcq.worker.main"], cwd=REPO,
                                  env=_worker_env(db_url, redis_url, sglang),
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_state(sessions, [job_id], JobState.succeeded, timeout=180)
    finally:
        worker.terminate()
        worker.wait(30)
    text = log.read_text()
    assert "engine: sglang at" in text and "health generation ok" in text, text[-2000:]
    with sessions() as session:
        cost = session.exec(select(JobCost).where(JobCost.job_id == job_id)).one()
    assert cost.engine_model == sglang.model and cost.verifier_tokens > 0


def test_a_worker_refuses_to_start_on_a_model_mismatch(
    db_url: str, redis_url: str, sglang: RunningServer,
) -> None:
    env = _worker_env(db_url, redis_url, sglang, TTCQ_ENGINE_MODEL="Qwen/Qwen2.5-Math-7B")
    done = subprocess.run([sys.executable, "-m", "ttcq.worker.main"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "not 'Qwen/Qwen2.5-Math-7B'" in done.stderr
