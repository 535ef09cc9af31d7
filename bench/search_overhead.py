"""Search overhead: the CPU time ttcq itself spends per engine call in beam search.

The engine answers instantly with a canned step that never ends the solution, so beam
search runs its full max_depth; the verifier returns seeded pseudo-random scores. The
time spent inside both fakes is subtracted from the search's CPU time, which leaves
what the strategy, trace, step bookkeeping and selection cost. The baseline, measured
in the same run, replays the very same requests against the bare fake engine."""

import json
import random
import time
from collections.abc import Sequence

from bench.common import save_results
from bench.scripted_engine import ScriptedEngine
from ttcq.worker.engines.base import Completion, GenerationRequest, Usage
from ttcq.worker.search.config import SearchConfig, make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import VerifierOutput

N, BEAM_WIDTH, MAX_DEPTH = 64, 4, 40
REPEATS = 5
PIECES = ["We", " multiply", " 16", " by", " 3", " to", " get", " 16", " *", " 3", " =", " 48",
          " eggs", ",", " and", " then", " we", " keep", " going", " with", " the", " rest",
          ".", "\n\n"]
STEP_IDS = list(range(1000, 1000 + len(PIECES)))
PROBLEM = Problem("Janet's ducks lay 16 eggs per day. How many eggs do they lay in 3 days?")


class InstantEngine(ScriptedEngine):
    """Every sample is the canned step, which ends at the step delimiter (never at EOS),
    so beam search runs its full depth; the time spent in here is summed."""

    def __init__(self) -> None:
        super().__init__("instant", PIECES, "\n\n")
        self.seconds = 0.0
        self.calls: list[Sequence[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        start = time.process_time()
        self.calls.append(requests)
        out = super().generate(requests)
        self.seconds += time.process_time() - start
        return out


class InstantVerifier:
    """Seeded pseudo-random step scores, so that beams rank differently every step."""

    name = "instant"

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seconds = 0.0

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        start = time.process_time()
        scores = [[self.rng.random() for _ in (c[-1:] if last_only else c)] for c in candidates]
        self.seconds += time.process_time() - start
        return VerifierOutput(scores, Usage(calls=1))


def _bare_engine_seconds(calls: list[Sequence[GenerationRequest]]) -> float:
    """The baseline: the same engine calls against the bare fake engine, best of repeats."""
    best = float("inf")
    for _ in range(REPEATS):
        engine = InstantEngine()
        for requests in calls:
            engine.generate(requests)
        best = min(best, engine.seconds)
    return best


def _search_once(config: SearchConfig) -> tuple[float, SearchResult, InstantEngine]:
    """ttcq's own CPU seconds for one search: the fakes' time taken out."""
    engine, verifier = InstantEngine(), InstantVerifier()
    start = time.process_time()
    result = run_search(PROBLEM, config, engine, verifier)
    total = time.process_time() - start
    return total - engine.seconds - verifier.seconds, result, engine


def measure(strategy: str = "beam_search", beam_width: int = BEAM_WIDTH) -> dict[str, object]:
    config = make_config(
        strategy=strategy, n=N, beam_width=beam_width, max_depth=MAX_DEPTH,
        max_step_tokens=len(STEP_IDS), max_tokens=len(STEP_IDS) * (MAX_DEPTH + 1),
        verifier="checker",  # only validated here: the instant verifier is passed in
    )
    # Best of several runs: CPU time is steady, but a shared machine still adds noise.
    search, result, engine = min((_search_once(config) for _ in range(REPEATS)), key=lambda r: r[0])
    calls = result.generation.calls
    branches = sum(r.n for requests in engine.calls for r in requests)
    baseline = _bare_engine_seconds(engine.calls)
    return {
        "strategy": strategy, "n": N, "beam_width": beam_width, "max_depth": MAX_DEPTH,
        "engine_calls": calls, "branches": branches, "trace_nodes": len(result.trace.nodes),
        "candidates": len(result.candidates),
        "search_cpu_s": round(search, 4), "fake_engine_cpu_s": round(engine.seconds, 4),
        "us_per_engine_call": round(1e6 * search / calls, 1),
        "us_per_branch": round(1e6 * search / branches, 2),
        "baseline_bare_engine_cpu_s": round(baseline, 4),
        "overhead_vs_bare_engine": round(search / baseline, 1) if baseline > 0 else None,
    }


def main() -> list[dict[str, object]]:
    rows = [measure("beam_search", 4), measure("beam_search", 8), measure("dvts", 4)]
    save_results("search_overhead", rows)
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
