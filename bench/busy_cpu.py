"""The embedded engine on a shared machine: time per problem while other processes keep
cores busy, against the same machine idle, for today's default (one thread per free
core, short spin at barriers) and for the build before it (a thread per core, libgomp's
default spinning) — side by side in one run, each case in a fresh process.

Load: `hogs` processes spinning in a loop, 0 (idle), 1 (one core busy) or all cores."""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import save_results

PROBLEMS = [
    "Tom has 37 apples and buys 18 more. How many apples does he have?",
    "A box holds 12 eggs. How many eggs are in 7 boxes?",
    "Sara reads 23 pages a day. How many pages does she read in 4 days?",
    "A train goes 60 miles an hour for 3 hours. How far does it go?",
]
# Majority of 4 with short answers: a few seconds a problem on 2 idle cores.
CONFIG = {"strategy": "majority", "n": 4, "max_tokens": 96, "verifier": "none"}
MODES = {
    # The pre-#6 engine: every core, and libgomp's default spin at each barrier (300,000
    # rounds when OMP_WAIT_POLICY is unset), which the engine now shortens by default.
    "spinning": {"threads": "all", "env": {"GOMP_SPINCOUNT": "300000"}},
    "default": {"threads": None, "env": {}},
}
HOG = "while True: pass"


def child(mode: str) -> None:
    """Solve PROBLEMS once in this process; print seconds per problem as JSON."""
    from ttcq.worker.engines.llamacpp import LlamaCppEngine
    from ttcq.worker.search.config import make_config
    from ttcq.worker.search.registry import run_search
    from ttcq.worker.search.types import Problem
    from ttcq.worker.verifiers.base import NoVerifier

    threads = os.cpu_count() if MODES[mode]["threads"] == "all" else None
    engine = LlamaCppEngine(n_ctx=1024, n_threads=threads)
    config = make_config(**CONFIG, seed=7)
    run_search(Problem("What is 1 + 1?"), config, engine, NoVerifier())  # warm up
    times = []
    for text in PROBLEMS:
        start = time.perf_counter()
        run_search(Problem(text), config, engine, NoVerifier())
        times.append(time.perf_counter() - start)
    sys.stdout.write(json.dumps(times) + "\n")


def run_case(mode: str, hogs: int) -> list[float]:
    """Seconds per problem for one mode under `hogs` spinning processes."""
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    env.update(MODES[mode]["env"])  # type: ignore[arg-type]
    loads = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    try:
        out = subprocess.run([sys.executable, "-m", "bench.busy_cpu", "--child", mode],
                             cwd=Path(__file__).parents[1], env=env,
                             capture_output=True, text=True, check=True).stdout
    finally:
        for p in loads:
            p.kill()
            p.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> list[dict[str, object]]:
    cores = os.cpu_count() or 2
    seconds: dict[tuple[str, int], float] = {}
    for hogs in (0, 1, cores):
        # Idle is the baseline of every ratio and varies by about 10% run to run: it is
        # measured twice per mode, in the order A B B A, so that drift cancels.
        order = ["spinning", "default", "default", "spinning"] if hogs == 0 else list(MODES)
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for mode in order:
            times[mode] += run_case(mode, hogs)
        for mode in MODES:
            seconds[mode, hogs] = statistics.median(times[mode])
            print(f"busy_cpu: {mode} with {hogs} busy cores: {seconds[mode, hogs]:.2f} s/problem")
    rows: list[dict[str, object]] = []
    for mode in MODES:
        idle = seconds[mode, 0]
        rows.append({
            "mode": mode, "idle_s_per_problem": round(idle, 2),
            "one_busy_s": round(seconds[mode, 1], 2),
            "all_busy_s": round(seconds[mode, cores], 2),
            "one_busy_over_idle": round(seconds[mode, 1] / idle, 2),
            "all_busy_over_idle": round(seconds[mode, cores] / idle, 2),
            "idle_over_spinning_idle": round(idle / seconds["spinning", 0], 3),
        })
    save_results("busy_cpu", rows)
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        for row in main():
            print(json.dumps(row))
