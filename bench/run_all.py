"""`make bench`: every benchmark, each with its baseline measured in the same run; a table
on stdout and the raw rows in bench/results/*.json."""

import platform
import time
from typing import cast

from bench import (
    bulk_submit,
    busy_cpu,
    checkpoint_cost,
    control_plane,
    prefix_reuse,
    report_speed,
    results_export,
    search_overhead,
    trace_storage,
)
from bench.common import save_results


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

TRACE_COLUMNS = [
    ("N", "n"), ("nodes", "trace_nodes"), ("rows", "result_rows"), ("path", "path"),
    ("ttcq rows/s", "ttcq_rows_per_s"), ("COPY rows/s", "copy_rows_per_s"),
    ("ttcq/COPY", "ttcq_over_copy"), ("ttcq ms", "ttcq_ms"), ("COPY ms", "copy_ms"),
]
SUBMIT_COLUMNS = [
    ("problems", "problems"), ("via", "via"), ("MB", "request_mb"), ("s", "seconds"),
    ("problems/s", "problems_per_s"), ("floor problems/s", "floor_problems_per_s"),
    ("ttcq/floor", "ttcq_over_floor"), ("API peak RSS MB", "api_peak_rss_mb"),
]
EXPORT_COLUMNS = [
    ("format", "format"), ("s", "seconds"), ("records/s", "records_per_s"),
    ("peak RSS MB", "cli_peak_rss_mb"), ("file MB", "file_mb"),
]
CONTROL_COLUMNS = [
    ("problems/round", "problems"), ("rounds", "rounds"),
    ("ttcq problems/s", "ttcq_problems_per_s"), ("no-op tasks/s", "noop_tasks_per_s"),
    ("ttcq/no-op", "ttcq_over_noop"),
]
BUSY_COLUMNS = [
    ("threads", "mode"), ("idle s/problem", "idle_s_per_problem"),
    ("1 core busy s", "one_busy_s"), ("all busy s", "all_busy_s"),
    ("1 busy/idle", "one_busy_over_idle"), ("all busy/idle", "all_busy_over_idle"),
    ("idle/spinning idle", "idle_over_spinning_idle"),
]
REPORT_COLUMNS = [
    ("problems", "problems"), ("curve rows", "budget_points"),
    ("by database s", "report_data_s"), ("result records s", "result_records_s"),
    ("fetched rows s", "fetched_rows_s"), ("db/records", "database_over_result_records"),
    ("db/rows", "database_over_fetched_rows"), ("drawing s", "draw_s"),
]
CHECKPOINT_COLUMNS = [
    ("jobs", "jobs"), ("calls/job", "calls_per_job"), ("saves/job", "saves_per_job"),
    ("writes/save", "postgres_writes_per_save"), ("bytes/save", "bytes_per_save"),
    ("ms/save", "ms_per_save"), ("ms/job", "ms_per_job_with_checkpoints"),
    ("ms/job without", "ms_per_job_without"), ("with/without", "with_over_without"),
]
STAGE_COLUMNS = [
    ("side", "side"), ("wall", "wall"), ("submit", "submit"), ("claim", "claim"),
    ("search", "search"), ("store", "store"), ("task other", "task_other"),
    ("in task", "task"), ("outside task", "outside_task"),
]


def stage_rows(control: dict[str, object]) -> list[dict[str, object]]:
    """Microseconds per problem (per task for the no-op), "-" where a side has no stage."""
    blank: dict[str, object] = {key: "-" for _, key in STAGE_COLUMNS}
    sides = [("ttcq", "ttcq_us_per_problem"), ("no-op", "noop_us_per_task")]
    return [{**blank, **cast(dict[str, object], control[key]), "side": side}
            for side, key in sides]


def export_summary(export: dict[str, object]) -> str:
    """The 100k-job export: the API's stream against Postgres' own, then each CLI writer."""
    stream = cast(dict[str, object], export["api_stream"])
    head = (f"Results export of {export['jobs']} jobs: API stream {stream['records_per_s']} "
            f"records/s ({stream['seconds']} s, peak RSS {stream['api_peak_rss_mb']} MB), "
            f"Postgres alone {export['floor_records_per_s']} records/s "
            f"(x{export['api_over_floor']}); status {export['status_ms']} ms")
    files = cast(list[dict[str, object]], export["cli_exports"])
    return head + "\n" + table("ttcq results -o FILE", files, EXPORT_COLUMNS)


def main() -> None:
    started = time.time()
    overhead = search_overhead.main()
    reuse = prefix_reuse.main()
    storage = trace_storage.main()
    control = control_plane.main()
    checkpoints = checkpoint_cost.main()
    submit = bulk_submit.main()
    export = results_export.main()
    busy = busy_cpu.main()
    report = report_speed.main()
    print()
    print(table("Search overhead (N=64, 40 steps, instant engine)", overhead, OVERHEAD_COLUMNS))
    print()
    print(table("Prefix reuse (SmolLM2-135M, 3 GSM8K problems)", reuse, REUSE_COLUMNS))
    print()
    print(table("Trace storage (a beam search result per store, median of 5)",
                storage, TRACE_COLUMNS))
    print()
    print(table("Control plane (majority N=4, instant engine, solo workers, median round)",
                control, CONTROL_COLUMNS))
    print()
    print(table("Control plane: microseconds per problem", stage_rows(control[0]),
                STAGE_COLUMNS))
    print()
    print(table("Checkpoints (beam search N=16, instant engine: only ttcq's work is timed)",
                [checkpoints], CHECKPOINT_COLUMNS))
    print()
    print(table("Bulk submit through the API (JSONL upload and JSON body)", submit,
                SUBMIT_COLUMNS))
    print()
    print(export_summary(export[0]))
    print()
    print(table("Shared machine (majority N=4, SmolLM2-135M, other processes spinning)",
                busy, BUSY_COLUMNS))
    print()
    print(table("Report numbers over thousands of problems (median of 5)", [report],
                REPORT_COLUMNS))
    summary = {"machine": platform.platform(), "python": platform.python_version(),
               "seconds": round(time.time() - started, 1)}
    save_results("summary", summary)


if __name__ == "__main__":
    main()
