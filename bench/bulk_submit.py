"""Bulk submit: problems stored and queued per second through the real API (uvicorn in a
subprocess, Postgres, Redis), for datasets of 1k, 10k and 100k problems, uploaded as a
JSONL file (what `ttcq submit` does) and sent as a JSON body; and the API process's peak
memory while it takes the 100k upload.

A submission is timed from the request to the answer, which comes once every job is
stored (committed) and its message is in Redis. The baseline, measured in the same run,
is the floor of the same work: the batch's job rows through one raw COPY, and its
messages through raw LPUSHes of ready-made bytes, with no parsing and no checking.
Peak memory is the process's high-water mark (VmHWM), reset just before the upload."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench.common import REDIS_URL, bench_database, libpq_url, save_results

ROOT = Path(__file__).parents[1]
SIZES = (1_000, 10_000, 100_000)
TOKEN = "bench-token"
CONFIG = {"strategy": "majority", "n": 4, "verifier": "none"}
START_SECONDS = 60.0
REQUEST_SECONDS = 300.0


def problem_record(i: int) -> dict[str, Any]:
    """A GSM8K-sized problem with a gold answer, an id and two extra fields."""
    return {
        "question": f"Problem {i}: Janet's ducks lay 16 eggs per day. She eats three for "
                    f"breakfast every morning and bakes muffins for her friends every day "
                    f"with four. She sells the remainder at the farmers' market daily for "
                    f"${i % 7 + 2} per fresh duck egg. How much does she make every day?",
        "answer": f"She sells 16 - 3 - 4 = 9 eggs.\n#### {9 * (i % 7 + 2)}",
        "custom_id": f"p{i}", "level": i % 5 + 1, "subject": "arithmetic",
    }


def write_dataset(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            out.write(json.dumps(problem_record(i)) + "\n")


@contextmanager
def api_process(database_url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "TTCQ_DATABASE_URL": database_url, "TTCQ_REDIS_URL": REDIS_URL,
           "TTCQ_API_TOKENS": f"{TOKEN}:bench"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "ttcq.api.app:create_app",
               "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        _wait_healthy(port, process)
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def _wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the API exited at start")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError("the API did not start")


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # "5": reset the high-water mark


def upload(client: httpx.Client, path: Path) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    with path.open("rb") as handle:
        response = client.post("/v1/batches/upload", files={"file": (path.name, handle)},
                               data={"config": json.dumps(CONFIG)})
    seconds = time.perf_counter() - start
    response.raise_for_status()
    return seconds, response.json()


def post_json(client: httpx.Client, path: Path) -> tuple[float, dict[str, Any]]:
    lines = path.read_bytes().splitlines()
    body = b'{"config": ' + json.dumps(CONFIG).encode() + b', "problems": [' + b",".join(lines)
    body += b"]}"
    start = time.perf_counter()
    response = client.post("/v1/batches", content=body,
                           headers={"Content-Type": "application/json"})
    seconds = time.perf_counter() - start
    response.raise_for_status()
    return seconds, response.json()


def raw_floor(url: str, batch_id: str, count: int) -> float:
    """Seconds for the bare minimum of a submission: COPY the batch's job rows again
    (under fresh ids) and LPUSH as many ready-made messages of the same size."""
    with psycopg.connect(libpq_url(url)) as conn:
        floor_batch = uuid.uuid4()  # the same rows under another batch, or (batch, line) clash
        conn.execute("INSERT INTO batch SELECT %s, owner, name, model, strategy, config, "
                     "priority, total_jobs, cancel_requested, created_at FROM batch "
                     "WHERE id = %s", [floor_batch, batch_id])
        conn.commit()
        rows = conn.execute("SELECT line, custom_id, problem, gold, meta::text, state, "
                            "attempts FROM job WHERE batch_id = %s", [batch_id]).fetchall()
        client = redis.Redis.from_url(REDIS_URL)
        sample = client.lindex(_queue_key(client), 0) or b""
        start = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(
                "COPY job (id, batch_id, line, custom_id, problem, gold, meta, state, attempts)"
                " FROM STDIN") as copy:
            for row in rows:
                copy.write_row((uuid.uuid4(), floor_batch, *row))
        conn.commit()
        pipe = client.pipeline(transaction=False)
        for first in range(0, count, 1000):
            pipe.lpush("bench-floor", *([sample] * min(1000, count - first)))
        pipe.execute()
        seconds = time.perf_counter() - start
        client.delete("bench-floor")
        client.close()
    return seconds


def _queue_key(client: redis.Redis) -> str:
    keys = [k for k in client.scan_iter("ttcq*") if client.type(k) == b"list"]
    return keys[0].decode()


def measure_size(client: httpx.Client, url: str, folder: Path, count: int,
                 api_pid: int) -> list[dict[str, object]]:
    path = folder / f"set{count}.jsonl"
    write_dataset(path, count)
    rows = []
    for how, send in (("upload", upload), ("json", post_json)):
        redis.Redis.from_url(REDIS_URL).flushdb()
        reset_peak(api_pid)
        seconds, batch = send(client, path)
        peak = peak_kib(api_pid)
        if batch["total"] != count or batch["counts"]["queued"] != count:
            raise RuntimeError(f"{how} of {count}: {batch['total']} stored")
        floor = raw_floor(url, batch["id"], count)
        rows.append({
            "problems": count, "via": how, "request_mb": round(path.stat().st_size / 2**20, 1),
            "seconds": round(seconds, 2), "problems_per_s": round(count / seconds),
            "floor_seconds": round(floor, 2), "floor_problems_per_s": round(count / floor),
            "ttcq_over_floor": round(floor / seconds, 2),
            "api_peak_rss_mb": round(peak / 1024, 1),
        })
    return rows


def main() -> list[dict[str, object]]:
    port = 8731
    rows: list[dict[str, object]] = []
    with bench_database("ttcq_bench_submit") as url, tempfile.TemporaryDirectory() as folder, \
            api_process(url, port) as api:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=REQUEST_SECONDS) as client:
            measure_size(client, url, Path(folder), 100, api.pid)  # warm-up, not counted
            for count in SIZES:
                rows += measure_size(client, url, Path(folder), count, api.pid)
    redis.Redis.from_url(REDIS_URL).flushdb()
    save_results("bulk_submit", rows)
    for row in rows:
        print(json.dumps(row))
    return rows


if __name__ == "__main__":
    main()
