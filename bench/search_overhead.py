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
from pathlib import Path

from worker.engines.base import Completion, EngineInfo, GenerationRequest, TokenLogprobs, Usage
from worker.search.config import SearchConfig, make_config
from worker.search.registry import run_search
from worker.search.types import Problem, SearchResult
from worker.verifiers.base import VerifierOutput

RESULTS = Path(__file__).parent / "results"
N, BEAM_WIDTH, MAX_DEPTH = 64, 4, 40
REPEATS = 5
PIECES = ["We", " multiply", " 16", " by", " 3", " to", " get", " 16", " *", " 3", " =", " 48",
          " eggs", ",", " and", " then", " we", " keep", " going", " with", " the", " rest",
          ".", "\n\n"]
STEP_IDS = list(range(1000, 1000 + len(PIECES)))
STEP_TEXT = "".join(PIECES)
PROBLEM = Problem("Janet's ducks lay 16 eggs per day. How many eggs do they lay in 3 days?")


class InstantEngine:
    """Implements the Engine protocol at no cost: every sample is the canned step, which
    ends at the step delimiter (never at EOS), and the time spent in here is summed."""

    def __init__(self) -> None:
        self.info = EngineInfo(model="instant", eos_token_ids=(2,))
        self.seconds = 0.0
        self.calls: list[Sequence[GenerationRequest]] = []
        self._pieces = dict(zip(STEP_IDS, PIECES, strict=True))

    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) % 900 + 3 for ch in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(self._pieces.get(t, "?") for t in token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return self.tokenize("".join(m["content"] for m in messages))

    def reset(self) -> None:
        pass

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        start = time.process_time()
        self.calls.append(requests)
        out = [[self._step(r) for _ in range(r.n)] for r in requests]
        self.seconds += time.process_time() - start
        return out

    @staticmethod
    def _step(request: GenerationRequest) -> Completion:
        prompt = len(request.prompt_ids)
        return Completion(list(STEP_IDS), STEP_TEXT, "stop", "\n\n", prompt, prompt - 1)

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        return [TokenLogprobs(dict.fromkeys(token_ids, -0.7), len(p), 0) for p in prompts]


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
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_overhead.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
