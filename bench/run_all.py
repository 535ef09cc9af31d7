"""`make bench`: every benchmark, each with its baseline measured in the same run; a table
on stdout and the raw rows in bench/results/*.json."""

import json
import platform
import time
from pathlib import Path

import prefix_reuse
import search_overhead

RESULTS = Path(__file__).parent / "results"


def table(title: str, rows: list[dict[str, object]], columns: list[tuple[str, str]]) -> str:
    header = [label for label, _ in columns]
    body = [[str(row[key]) for _, key in columns] for row in rows]
    widths = [max(len(cell) for cell in col) for col in zip(header, *body, strict=True)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(lines)


OVERHEAD_COLUMNS = [
    ("strategy", "strategy"), ("M", "beam_width"), ("engine calls", "engine_calls"),
    ("branches", "branches"), ("search CPU s", "search_cpu_s"),
    ("us/call", "us_per_engine_call"), ("us/branch", "us_per_branch"),
    ("bare engine CPU s", "baseline_bare_engine_cpu_s"), ("x bare", "overhead_vs_bare_engine"),
]
REUSE_COLUMNS = [
    ("strategy", "strategy"), ("calls", "engine_calls"), ("naive prompt", "naive_prompt_tokens"),
    ("recomputed", "recomputed_prompt_tokens"), ("ideal cache", "ideal_recomputed_tokens"),
    ("recomputed/naive", "recomputed_over_naive"), ("recomputed/ideal", "recomputed_over_ideal"),
    ("wall s", "wall_s"),
]


def main() -> None:
    started = time.time()
    overhead = search_overhead.main()
    reuse = prefix_reuse.main()
    print()
    print(table("Search overhead (N=64, 40 steps, instant engine)", overhead, OVERHEAD_COLUMNS))
    print()
    print(table("Prefix reuse (SmolLM2-135M, 3 GSM8K problems)", reuse, REUSE_COLUMNS))
    summary = {"machine": platform.platform(), "python": platform.python_version(),
               "seconds": round(time.time() - started, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
