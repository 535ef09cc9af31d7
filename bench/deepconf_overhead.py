"""DeepConf on real SGLang (CPU, SmolLM2-135M): ttcq's own time per chunk (the search's
wall time not spent waiting for the server, over its engine calls) and the share of prompt
tokens the radix cache served (cached / prompt) over online DeepConf runs on GSM8K.

    .venv/bin/python -m bench.deepconf_overhead

Writes bench/results/deepconf_overhead.json."""

import json
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, save_results
from lab.servers import server_paths, sglang_server
from ttcq.worker.engines.sglang import SGLangEngine
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.types import Problem
from ttcq.worker.verifiers.base import NoVerifier

ROOT = Path(__file__).parents[1]
CONFIG = {"strategy": "deepconf", "n": 16, "deepconf_warmup": 4, "deepconf_window": 32,
          "deepconf_keep": 50.0, "chunk_tokens": 32, "max_tokens": 128, "seed": 2}


def problems(count: int) -> list[Problem]:
    lines = (ROOT / "examples" / "gsm8k_sample.jsonl").read_text().splitlines()[:count]
    rows = [json.loads(line) for line in lines]
    return [Problem(r["question"], r["answer"].rsplit("####", 1)[1].strip()) for r in rows]


def main() -> dict[str, Any]:
    config = make_config(**CONFIG)
    wall = engine_seconds = 0.0
    calls = prompt = cached = traces = stops = 0
    with sglang_server(server_paths()["TTCQ_POLICY_MODEL_DIR"],
                       RESULTS / "logs" / "sglang.log") as server:
        engine = SGLangEngine(server.url)
        for problem in problems(4):
            start = time.perf_counter()
            result = run_search(problem, config, engine, NoVerifier())
            wall += time.perf_counter() - start
            usage = result.generation
            engine_seconds += usage.seconds
            calls += usage.calls
            prompt += usage.prompt_tokens
            cached += usage.cached_tokens
            traces += len({n.id for n in result.trace.nodes if n.depth == 1})
            stops += sum(1 for n in result.trace.nodes if n.kind == "stop")
        engine.close()
    row = {"config": CONFIG, "problems": 4, "traces": traces, "stopped": stops,
           "engine_calls": calls, "wall_s": round(wall, 2),
           "engine_s": round(engine_seconds, 2),
           "ttcq_ms_per_chunk": round((wall - engine_seconds) / calls * 1000, 2),
           "cached_over_prompt": round(cached / prompt, 4)}
    save_results("deepconf_overhead", row)
    return row


if __name__ == "__main__":
    print(json.dumps(main()))
