"""Step labelling: what the radix cache saves, labels per minute, and OmegaPRM against
Math-Shepherd, as ratios within one run.

- Real SGLang (CPU, SmolLM2-135M): Math-Shepherd labels of 16 GSM8K solutions (4 problems
  x 4 samples) with R = 8. Prompt tokens the server computed, against the prompt tokens a
  naive client would send (every rollout's whole prompt), and cached / prompt, from the
  tokens the server reported for each rollout. Labels per minute with the 4 problems one
  at a time, then all in flight at once (threads sharing one engine, as a worker's crew).
- The ground-truth task (instant): OmegaPRM and Math-Shepherd label the same solutions;
  rollouts spent per solution, and how often their first wrong steps agree."""

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench import in_flight_latency
from bench.common import RESULTS, bench_database, save_results
from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import Level, make_dataset, sound_path
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
        label(engine, problems[0], **{**SGLANG, "strategy": "math_shepherd", "n": 1,
                                      "rollouts": 1, "seed": 99})  # warm-up
        flush = lambda: httpx.post(f"{server.url}/flush_cache", timeout=60).raise_for_status()  # noqa: E731

        def one_at_a_time() -> list[SearchResult]:
            return [label(engine, p, strategy="math_shepherd", **SGLANG) for p in problems]

        def in_flight() -> list[SearchResult]:
            with ThreadPoolExecutor(len(problems)) as pool:
                return list(pool.map(lambda p: label(engine, p, strategy="math_shepherd",
                                                     **SGLANG), problems))

        # Each mode starts from an empty radix cache: the second would find the first's.
        flush()
        serial, results = per_minute(one_at_a_time)
        flush()
        parallel, _ = per_minute(in_flight)
        engine.close()
    return {**cache_row(results), "labels_per_minute_one_at_a_time": round(serial, 1),
            "labels_per_minute_in_flight": round(parallel, 1),
            "in_flight_over_one_at_a_time": round(parallel / serial, 2)}


def omega_vs_shepherd(problems: int = 200, rollouts: int = 4) -> dict[str, Any]:
    """Both label the same finished solutions, each with rollouts of its own; their first
    wrong steps against each other and against the truth the steps' markers tell."""
    engine = GroundTruthEngine()
    levels = {1: Level(0.85, 6), 2: Level(0.7, 6), 3: Level(0.55, 6)}
    spent = {"math_shepherd": 0, "omega": 0}
    agree = wrong = solutions = 0
    exact = {"math_shepherd": 0, "omega": 0}
    for row in make_dataset(problems, levels, seed=3):
        base = Problem(row["problem"], row["answer"])
        shepherd = label(engine, base, strategy="math_shepherd", n=4, rollouts=rollouts)
        finished = [c for c in shepherd.candidates[:4] if c.finished]
        omega = label(engine, Problem(row["problem"], row["answer"],
                                      solutions=tuple(c.text for c in finished)),
                      strategy="omega", n=4, rollouts=rollouts, seed=1)
        for result, method in ((shepherd, "math_shepherd"), (omega, "omega")):
            spent[method] += sum(1 for n in result.trace.nodes if n.kind == "rollout")
        for index, candidate in enumerate(finished):
            solutions += 1
            truth = [sound for _, sound in sound_path([candidate.text])]
            if all(truth):
                continue
            wrong += 1
            found = {"math_shepherd": _first_wrong(shepherd, candidate.index),
                     "omega": _first_wrong(omega, index)}
            agree += found["math_shepherd"] == found["omega"]
            for method, step in found.items():
                exact[method] += step == truth.index(False)
    return {"problems": problems, "solutions": solutions, "rollouts": rollouts,
            "rollouts_per_solution": {m: round(s / solutions, 2) for m, s in spent.items()},
            "omega_over_shepherd": round(spent["omega"] / spent["math_shepherd"], 3),
            "wrong_solutions": wrong, "first_wrong_step_agreement": round(agree / wrong, 3),
            "first_wrong_step_exact": {m: round(e / wrong, 3) for m, e in exact.items()}}


def _first_wrong(result: SearchResult, candidate: int) -> int | None:
    steps = [lb.step for lb in result.labels if lb.candidate == candidate and not lb.hard]
    return min(steps) if steps else None


LATENCY_LABELS = {"strategy": "math_shepherd", "n": 4, "rollouts": 8, "verifier": "none"}


def latency_rows() -> list[dict[str, Any]]:
    """Labels per minute through a thread-pool worker on the latency-bound engine double
    (every call 0.2 s, as in bench.in_flight_latency), 1 and 16 label jobs in flight."""
    with bench_database("ttcq_bench_label_latency") as db_url:
        rows = [in_flight_latency.run(db_url, k, LATENCY_LABELS) for k in (1, 16)]
    rows[1]["in_flight_over_one_at_a_time"] = round(
        float(rows[1]["labels_per_min"]) / float(rows[0]["labels_per_min"]), 2)
    return rows


PARTS = {"ground_truth": lambda: omega_vs_shepherd(), "latency_double": lambda: latency_rows(),
         "sglang": lambda: sglang_rows()}


def main(parts: list[str]) -> dict[str, Any]:
    """Run the parts asked for; the others keep their figures from the last run."""
    path = RESULTS / "label_rollouts.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for part in parts:
        results[part] = PARTS[part]()
        print(json.dumps({part: results[part]}))
    save_results("label_rollouts", results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", choices=list(PARTS),
                        help="run only this part (repeatable; default: all)")
    main(parser.parse_args().part or list(PARTS))
