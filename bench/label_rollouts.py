"""Step labelling: what the radix cache saves, labels per minute, and OmegaPRM against
Math-Shepherd, as ratios within one run.

- Real SGLang (CPU, SmolLM2-135M): Math-Shepherd labels of 16 GSM8K solutions (4 problems
  x 4 samples) with R = 8. Prompt tokens the server computed, against the prompt tokens a
  naive client would send (every rollout's whole prompt), and cached / prompt, from the
  tokens the server reported for each rollout. Labels per minute with the 4 problems one
  at a time, then all in flight at once (threads sharing one engine, as a worker's crew).
- The ground-truth task (instant): OmegaPRM and Math-Shepherd label the same solutions;
  rollouts spent per solution, and how often their first wrong steps agree."""

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import RESULTS, save_results
from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import Level, make_dataset
from lab.servers import server_paths, sglang_server
from ttcq.worker.engines.base import Engine
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import NoVerifier

ROOT = Path(__file__).parents[1]
SGLANG = {"n": 4, "rollouts": 8, "max_tokens": 64, "verifier": "none", "seed": 1,
          "system_prompt": "Solve step by step, one short sentence per step, separated by "
                           "blank lines. End with \\boxed{answer}."}


def gsm8k(count: int) -> list[Problem]:
    lines = (ROOT / "examples" / "gsm8k_sample.jsonl").read_text().splitlines()[:count]
    rows = [json.loads(line) for line in lines]
    return [Problem(r["question"], r["answer"].rsplit("####", 1)[1].strip()) for r in rows]


def label(engine: Engine, problem: Problem, **config: Any) -> SearchResult:
    return run_search(problem, make_config(**config), engine, NoVerifier())


def cache_row(results: list[SearchResult]) -> dict[str, Any]:
    rollouts = [n for r in results for n in r.trace.nodes if n.kind == "rollout"]
    prompt = sum(n.prompt_tokens for n in rollouts)
    cached = sum(n.cached_tokens for n in rollouts)
    return {"solutions": sum(len({lb.candidate for lb in r.labels}) for r in results),
            "labels": sum(len(r.labels) for r in results), "rollouts": len(rollouts),
            "naive_prompt_tokens": prompt, "computed_prompt_tokens": prompt - cached,
            "computed_over_naive": round((prompt - cached) / prompt, 4),
            "cached_over_prompt": round(cached / prompt, 4)}


def per_minute(run: Callable[[], list[SearchResult]]) -> tuple[float, list[SearchResult]]:
    start = time.perf_counter()
    results = run()
    seconds = time.perf_counter() - start
    return sum(len(r.labels) for r in results) * 60 / seconds, results


def sglang_rows() -> dict[str, Any]:
    paths = server_paths()
    problems = gsm8k(4)
    with sglang_server(paths["TTCQ_POLICY_MODEL_DIR"], RESULTS / "logs" / "sglang.log") as server:
        engine = SGLangEngine(server.url)
        label(engine, problems[0], **{**SGLANG, "n": 1, "rollouts": 1})  # warm-up

        def one_at_a_time() -> list[SearchResult]:
            return [label(engine, p, strategy="math_shepherd", **SGLANG) for p in problems]

        def in_flight() -> list[SearchResult]:
            with ThreadPoolExecutor(len(problems)) as pool:
                return list(pool.map(lambda p: label(engine, p, strategy="math_shepherd",
                                                     **SGLANG), problems))

        serial, results = per_minute(one_at_a_time)
        engine.reset()
        parallel, _ = per_minute(in_flight)
        engine.close()
    return {**cache_row(results), "labels_per_minute_one_at_a_time": round(serial, 1),
            "labels_per_minute_in_flight": round(parallel, 1),
            "in_flight_over_one_at_a_time": round(parallel / serial, 2)}


def omega_vs_shepherd(problems: int = 200, rollouts: int = 4) -> dict[str, Any]:
    engine = GroundTruthEngine()
    levels = {1: Level(0.85, 6), 2: Level(0.7, 6), 3: Level(0.55, 6)}
    spent = {"math_shepherd": 0, "omega": 0}
    agree = wrong = solutions = 0
    for row in make_dataset(problems, levels, seed=3):
        base = Problem(row["problem"], row["answer"])
        shepherd = label(engine, base, strategy="math_shepherd", n=4, rollouts=rollouts,
                         verifier="none")
        texts = tuple(c.text for c in shepherd.candidates[:4])
        omega = label(engine, Problem(row["problem"], row["answer"], solutions=texts),
                      strategy="omega", n=4, rollouts=rollouts, verifier="none")
        for result, method in ((shepherd, "math_shepherd"), (omega, "omega")):
            spent[method] += sum(1 for n in result.trace.nodes if n.kind == "rollout")
        for index in range(4):
            solutions += 1
            first = [_first_wrong(r, index) for r in (shepherd, omega)]
            if first[0] is not None or first[1] is not None:
                wrong += 1
                agree += first[0] == first[1]
    return {"problems": problems, "solutions": solutions, "rollouts": rollouts,
            "rollouts_per_solution": {m: round(s / solutions, 2) for m, s in spent.items()},
            "omega_over_shepherd": round(spent["omega"] / spent["math_shepherd"], 3),
            "wrong_solutions": wrong, "first_wrong_step_agreement": round(agree / wrong, 3)}


def _first_wrong(result: SearchResult, candidate: int) -> int | None:
    steps = [lb.step for lb in result.labels if lb.candidate == candidate and not lb.hard]
    return min(steps) if steps else None


def main() -> dict[str, Any]:
    results = {"ground_truth": omega_vs_shepherd()}
    print(json.dumps(results["ground_truth"]))
    results["sglang"] = sglang_rows()
    print(json.dumps(results["sglang"]))
    save_results("label_rollouts", results)
    return results


if __name__ == "__main__":
    main()
