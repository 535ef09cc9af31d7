"""Results export: records per second out of a 100,000-job batch, through the real API
(uvicorn in a subprocess) and the CLI's writers (`ttcq results -o out.jsonl|.csv|.parquet`,
each in a subprocess of its own), with each process's peak memory; and `ttcq status` on
that batch (the API's batch read, median of a few).

The batch is stored the fast way (its jobs through db.batches.create_batch, its results
generated in SQL: every job succeeded with 4 candidates, a budget curve of 3 points and a
cost row), since storing 100k results through the worker is the control plane's business.
The baseline, in the same run, is Postgres writing the same rows as JSON lines itself
(`COPY (SELECT row_to_json ...) TO STDOUT`, one statement, no Python)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlmodel import Session

from bench.bulk_submit import TOKEN, api_process, peak_kib, problem_record
from bench.common import bench_database, libpq_url, save_results
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.session import get_engine

ROOT = Path(__file__).parents[1]
JOBS = 100_000
PORT = 8732
FORMATS = (".jsonl", ".csv", ".parquet")
STATUS_READS = 5
FILL_SQL = [
    """UPDATE job SET state = 'succeeded', answer = '18', correct = (line %% 3 <> 0),
           attempts = 1, finished_at = now() WHERE batch_id = %(b)s""",
    """INSERT INTO candidate (job_id, idx, grp, leaf_node_id, text, finish, answer, canonical,
           extraction, step_scores, score, selected, correct)
       SELECT j.id, k, k, k + 1, 'She sells 16 - 3 - 4 = 9 eggs.\n\n9 * 2 = 18.\n\n'
              || 'The answer is \\boxed{18}.', 'stop', '18', '18', 'boxed',
              '[0.9, 0.8, 0.95]', 0.8, k = 0, true
       FROM job j, generate_series(0, 3) k WHERE j.batch_id = %(b)s""",
    """INSERT INTO budget_point (job_id, n, candidate_idx, answer, correct)
       SELECT j.id, n, 0, '18', true FROM job j, unnest(ARRAY[1, 2, 4]) n
       WHERE j.batch_id = %(b)s""",
    """INSERT INTO job_cost (job_id, prompt_tokens, cached_tokens, completion_tokens,
           verifier_tokens, verifier_cached_tokens, engine_calls, verifier_calls,
           wall_seconds, engine_seconds, flops)
       SELECT id, 480, 360, 200, 0, 0, 1, 0, 1.5, 1.4, 2.1e11 FROM job
       WHERE batch_id = %(b)s""",
]
FLOOR_SQL = """COPY (SELECT row_to_json(r) FROM (
    SELECT j.custom_id, j.line, j.problem, j.gold, j.meta, j.answer, j.correct, j.state,
           j.error, j.attempts, row_to_json(c) AS cost,
           (SELECT json_agg(x ORDER BY x.idx) FROM candidate x WHERE x.job_id = j.id)
               AS candidates,
           (SELECT json_agg(p ORDER BY p.n) FROM budget_point p WHERE p.job_id = j.id)
               AS budget_curve
    FROM job j LEFT JOIN job_cost c ON c.job_id = j.id
    WHERE j.batch_id = %s ORDER BY j.line) r) TO STDOUT"""


def stored_batch(url: str) -> str:
    problems = [ProblemIn(line=i + 1, problem=problem_record(i)["question"], gold="18",
                          custom_id=f"p{i}", meta={"level": i % 5 + 1}) for i in range(JOBS)]
    with Session(get_engine(url)) as session:
        batch, _ = create_batch(session=session, owner="bench",
                                config={"strategy": "majority", "n": 4}, problems=problems)
        batch_id = str(batch.id)
    with psycopg.connect(libpq_url(url)) as conn:
        for sql in FILL_SQL:
            conn.execute(sql, {"b": batch_id})
        conn.execute("ANALYZE")
    return batch_id


def floor_seconds(url: str, batch_id: str) -> tuple[float, int]:
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cursor:
        start = time.perf_counter()
        size = 0
        with cursor.copy(FLOOR_SQL, [batch_id]) as copy:
            for chunk in copy:
                size += len(chunk)
        return time.perf_counter() - start, size


def export(batch_id: str, suffix: str, folder: Path) -> dict[str, Any]:
    """`ttcq results BATCH -o out.SUFFIX` in a child process; its seconds and peak."""
    out = folder / f"out{suffix}"
    command = [sys.executable, "-m", "bench.results_export", "--export", batch_id, "--out",
               str(out)]
    env = {"TTCQ_API_URL": f"http://127.0.0.1:{PORT}", "TTCQ_API_TOKEN": TOKEN}
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, check=True)
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    row["file_mb"] = round(out.stat().st_size / 2**20, 1)
    return row


def run_export(batch_id: str, out: Path) -> None:
    """The child: the CLI's results command, timed, then this process's peak memory."""
    from click.testing import CliRunner

    from ttcq.api.cli import main

    start = time.perf_counter()
    result = CliRunner().invoke(main, ["results", batch_id, "-o", str(out)])
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"ttcq results failed: {result.output}")
    print(json.dumps({"format": out.suffix, "seconds": round(seconds, 2),
                      "records_per_s": round(JOBS / seconds),
                      "cli_peak_rss_mb": round(peak_kib(os.getpid()) / 1024, 1)}))


def api_stream(client: httpx.Client, batch_id: str, api_pid: int) -> dict[str, Any]:
    Path(f"/proc/{api_pid}/clear_refs").write_text("5")
    start = time.perf_counter()
    lines = size = 0
    with client.stream("GET", f"/v1/batches/{batch_id}/results") as response:
        for line in response.iter_lines():
            lines += 1
            size += len(line) + 1
    seconds = time.perf_counter() - start
    if lines != JOBS:
        raise RuntimeError(f"{lines} result lines for {JOBS} jobs")
    return {"seconds": round(seconds, 2), "records_per_s": round(JOBS / seconds),
            "mb": round(size / 2**20, 1), "api_peak_rss_mb": round(peak_kib(api_pid) / 1024, 1)}


def status_ms(client: httpx.Client, batch_id: str) -> float:
    times = []
    for _ in range(STATUS_READS):
        start = time.perf_counter()
        client.get(f"/v1/batches/{batch_id}").raise_for_status()
        times.append(time.perf_counter() - start)
    return round(1e3 * statistics.median(times), 1)


def measure() -> dict[str, Any]:
    with bench_database("ttcq_bench_export") as url, tempfile.TemporaryDirectory() as folder:
        batch_id = stored_batch(url)
        floor, floor_bytes = floor_seconds(url, batch_id)
        with api_process(url, PORT) as api:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", headers=headers,
                              timeout=300) as client:
                stream = api_stream(client, batch_id, api.pid)
                status = status_ms(client, batch_id)
                files = [export(batch_id, suffix, Path(folder)) for suffix in FORMATS]
    return {
        "jobs": JOBS, "api_stream": stream, "status_ms": status, "cli_exports": files,
        "floor_seconds": round(floor, 2), "floor_records_per_s": round(JOBS / floor),
        "floor_mb": round(floor_bytes / 2**20, 1),
        "api_over_floor": round(floor / stream["seconds"], 2),
    }


def main() -> list[dict[str, Any]]:
    rows = [measure()]
    save_results("results_export", rows)
    for row in rows:
        print(json.dumps(row))
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description="results export rate of a 100k-job batch")
    parser.add_argument("--export", help="run `ttcq results` on this batch (internal)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.export:
        run_export(args.export, args.out)
    else:
        main()


if __name__ == "__main__":
    cli()
