"""Prefix reuse: prompt tokens the llama.cpp engine actually recomputes, against the naive
total (every prompt evaluated from scratch) and against an ideal cache that keeps every
prefix it has ever seen, on GSM8K problems with the real SmolLM2 model.

The verifier is the checker, which uses no model, so only the generator's tokens count."""

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import save_results
from ttcq.worker.engines.base import Completion, Engine, GenerationRequest
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.engines.wrapper import EngineWrapper
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem
from ttcq.worker.verifiers.checker import CheckerVerifier

ROOT = Path(__file__).parents[1]
STRATEGIES = ["beam_search", "dvts", "best_of_n"]
SETTINGS = {"n": 8, "beam_width": 4, "max_depth": 4, "max_step_tokens": 48, "max_tokens": 192}
N_PROBLEMS = 3


class PrefixTrie:
    """Every token sequence seen so far, as a trie: what an unbounded cache would hold."""

    def __init__(self) -> None:
        self.root: dict[int, dict] = {}

    def match(self, tokens: Sequence[int]) -> int:
        node, n = self.root, 0
        for t in tokens:
            if t not in node:
                break
            node, n = node[t], n + 1
        return n

    def insert(self, tokens: Sequence[int]) -> None:
        node = self.root
        for t in tokens:
            node = node.setdefault(t, {})


class IdealCacheMeter(EngineWrapper):
    """Passes calls to the engine and counts what an ideal cache would recompute: per
    sample, the prompt tokens no earlier prompt or output covered (at least the last one,
    whose logits are needed, as SGLang and llama.cpp both do)."""

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.trie = PrefixTrie()
        self.ideal = 0

    def reset(self) -> None:
        self.inner.reset()
        self.trie = PrefixTrie()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        for r in requests:
            fresh = len(r.prompt_ids) - min(self.trie.match(r.prompt_ids), len(r.prompt_ids) - 1)
            self.ideal += fresh + (r.n - 1)  # the other samples share that prefill
            self.trie.insert(r.prompt_ids)
        results = self.inner.generate(requests)
        for r, samples in zip(requests, results, strict=True):
            for c in samples:
                self.trie.insert(tuple(r.prompt_ids) + tuple(c.token_ids))
        return results


def problems() -> list[Problem]:
    lines = (ROOT / "examples" / "gsm8k_sample.jsonl").read_text().splitlines()[:N_PROBLEMS]
    return [Problem(json.loads(line)["question"]) for line in lines]


def measure(engine: Engine, strategy: str) -> dict[str, object]:
    config = make_config(strategy=strategy, verifier="checker", seed=1, **SETTINGS)
    naive = recomputed = ideal = calls = 0
    start = time.perf_counter()
    for problem in problems():
        meter = IdealCacheMeter(engine)
        usage = run_search(problem, config, meter, CheckerVerifier()).generation
        naive += usage.prompt_tokens
        recomputed += usage.prompt_tokens - usage.cached_tokens
        ideal += meter.ideal
        calls += usage.calls
    return {
        "strategy": strategy, **SETTINGS, "problems": N_PROBLEMS, "engine_calls": calls,
        "naive_prompt_tokens": naive, "recomputed_prompt_tokens": recomputed,
        "ideal_recomputed_tokens": ideal,
        "recomputed_over_naive": round(recomputed / naive, 4),
        "recomputed_over_ideal": round(recomputed / ideal, 3),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> list[dict[str, object]]:
    # Half the cores: llama.cpp's threads spin while they wait, and on a machine shared
    # with other work an oversubscribed pool slows decoding by an order of magnitude.
    engine = LlamaCppEngine(n_ctx=2048, n_threads=max(1, (os.cpu_count() or 2) // 2))
    rows = [measure(engine, s) for s in STRATEGIES]
    save_results("prefix_reuse", rows)
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
