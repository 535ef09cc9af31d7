"""Console speed on real sizes: a batch of 100,000 jobs (states, grades, costs and levels
as a large run leaves them), 1,000 of its problems again under another strategy (a job's
others of the same problem), and a job whose search tree has 2,000 nodes, served by the
real API (uvicorn in a thread) from Postgres.

Measured: each /v1 read the pages make (median of REPEATS, after a warm-up), and, where
Debian's Chromium is installed (scripts/browser.sh), the pages themselves in headless
Chromium: from navigation until the page has drawn (data-ready, polled by WebDriver), the
page's own clock from navigation to drawn, and the tree's "Expand all" of every node.
(The report endpoint is measured by bench.report_speed.)
`python -m bench.console`; figures in bench/results/console.json."""

import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text
from sqlmodel import Session

from bench.common import REDIS_URL, bench_database, save_results
from ttcq.api.app import create_app
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.bulk import insert_ignoring_conflicts
from ttcq.db.models import Candidate, TraceNode
from ttcq.db.session import get_engine
from ttcq.settings import Settings
from ttcq.worker.search.config import make_config

JOBS = 100_000
TREE_NODES = 2_000
TWINS = 1_000  # the first problems of the 100,000 again, under another strategy
REPEATS = 5
KEEP_ABOVE = 0.5  # a step scoring above it is kept (expanded), the others pruned
TOKEN = "bench-token"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# A large run part way: most jobs done (graded by line), some failed, some still running.
_STATES_SQL = """
UPDATE job SET
  state = CASE WHEN line % 50 = 0 THEN 'failed' WHEN line > 95000 THEN 'queued'
               WHEN line > 94000 THEN 'running' ELSE 'succeeded' END,
  correct = CASE WHEN line % 50 = 0 OR line > 94000 THEN NULL ELSE line % 3 <> 0 END,
  failure = CASE WHEN line % 50 = 0 THEN 'search' END,
  error = CASE WHEN line % 50 = 0 THEN 'ValueError: the search raised' END,
  answer = CASE WHEN line % 50 <> 0 AND line <= 94000 THEN '42' END,
  started_at = now() - interval '2 hours' + line * interval '70 milliseconds',
  finished_at = CASE WHEN line <= 94000 THEN now() - interval '2 hours'
                     + line * interval '72 milliseconds' END
WHERE batch_id = :batch
"""
_COSTS_SQL = """
INSERT INTO job_cost (job_id, prompt_tokens, cached_tokens, completion_tokens, thinking_tokens,
  verifier_tokens, verifier_cached_tokens, engine_calls, verifier_calls, wall_seconds,
  engine_seconds, flops, engine_model, seeded, wasted_tokens, wasted_cached_tokens,
  resumed_calls)
SELECT id, 3000 + line % 700, 2400, 900 + line % 1300, 0, 1500, 800, 8, 8, 2.5, 2.0, 1e11,
  'bench', true, 0, 0, 0
FROM job WHERE batch_id = :batch AND state = 'succeeded'
"""


def _problems(count: int) -> Iterator[ProblemIn]:
    return (ProblemIn(line=i + 1, problem=f"Problem {i}: what is {i} + {i}?", gold="42",
                      meta={"level": 1 + i % 5}) for i in range(count))


def _big_batch(session: Session) -> str:
    config = make_config(strategy="beam_search", n=16, beam_width=4).model_dump(mode="json")
    batch, _ = create_batch(session=session, owner="bench", config=config,
                            problems=_problems(JOBS), name="100k")
    session.execute(text(_STATES_SQL), {"batch": batch.id})
    session.execute(text(_COSTS_SQL), {"batch": batch.id})
    session.commit()
    session.execute(text("ANALYZE"))
    return str(batch.id)


def _tree_rows(job_id: Any, rng: random.Random) -> tuple[list[dict[str, Any]], list[dict]]:
    """A beam-search-shaped tree: each kept node has four children, half of them kept."""
    nodes = [{"job_id": job_id, "node_id": 0, "parent_id": None, "depth": 0, "kind": "prompt",
              "status": "expanded", "text": "the prompt " * 40, "prompt_tokens": 400}]
    frontier = [0]
    while len(nodes) < TREE_NODES:
        parent = frontier.pop(0)
        for _ in range(4):
            if len(nodes) == TREE_NODES:
                break
            score = rng.random()
            nodes.append({"job_id": job_id, "node_id": len(nodes), "parent_id": parent,
                          "depth": nodes[parent]["depth"] + 1, "kind": "step",
                          "status": "expanded" if score > KEEP_ABOVE else "pruned",
                          "text": f"Step {len(nodes)}: " + "some working " * 20,
                          "completion_tokens": 40, "step_score": score, "agg_score": score})
            if score > KEEP_ABOVE:
                frontier.append(len(nodes) - 1)
    leaves = [n for n in nodes if n["status"] == "pruned"][-4:]
    for node in leaves:
        node["status"] = "finished"
    leaves[0]["status"] = "selected"
    candidates = [{"job_id": job_id, "idx": i, "grp": 0, "leaf_node_id": n["node_id"],
                   "text": "...", "finish": "stop", "answer": "42", "step_scores": [0.9],
                   "score": 0.9, "selected": i == 0} for i, n in enumerate(leaves)]
    return nodes, candidates


def _twin_job(session: Session, batch: str) -> str:
    """A job of the 100,000-job batch whose problem a smaller majority batch has too."""
    config = make_config(strategy="majority", n=16).model_dump(mode="json")
    create_batch(session=session, owner="bench", config=config, problems=_problems(TWINS),
                 name="twins")
    session.execute(text("ANALYZE"))
    job = session.execute(text("SELECT id FROM job WHERE batch_id = :batch AND line = :line"),
                          {"batch": batch, "line": TWINS // 2})
    return str(job.scalar_one())


def _tree_job(session: Session) -> str:
    config = make_config(strategy="beam_search", n=16).model_dump(mode="json")
    _, (job_id,) = create_batch(session=session, owner="bench", config=config, name="tree",
                                problems=[ProblemIn(line=1, problem="x", gold="42")])
    nodes, candidates = _tree_rows(job_id, random.Random(0))
    defaults = {"prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0,
                "step_score": None, "agg_score": None, "visits": None, "q_value": None}
    insert_ignoring_conflicts(session, TraceNode.__table__,  # type: ignore[attr-defined]
                              [{**defaults, **n} for n in nodes])
    insert_ignoring_conflicts(session, Candidate.__table__,  # type: ignore[attr-defined]
                              [{"answer": None, "canonical": None, "extraction": None,
                                "correct": None, **c} for c in candidates])
    session.commit()
    return str(job_id)


@contextmanager
def _live_api(url: str) -> Iterator[str]:
    settings = Settings(database_url=url, redis_url=REDIS_URL, api_tokens=[f"{TOKEN}:bench"])
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.celery.close()


def _median_ms(fn: Callable[[], object]) -> float:
    fn()  # warm-up: connections, plans, the browser's cache of static files
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 1)


def _api_figures(base: str, batch: str, job: str, twin: str) -> dict[str, Any]:
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60)
    reads = {
        "batch_list": "/v1/batches?limit=100", "batch": f"/v1/batches/{batch}",
        "problems_page": f"/v1/batches/{batch}/problems?limit=50",
        "problems_by_tokens": f"/v1/batches/{batch}/problems?sort=-tokens&limit=50",
        "problems_wrong_level_3": f"/v1/batches/{batch}/problems?outcome=wrong&level=3",
        "failures": f"/v1/batches/{batch}/failures", "cost": f"/v1/batches/{batch}/cost",
        "tree_2000": f"/v1/jobs/{job}/tree",
        "same_problem_in_100k": f"/v1/jobs/{twin}/same-problem",
    }
    figures: dict[str, Any] = {}
    for name, path in reads.items():
        assert client.get(path).status_code == 200, path
        figures[f"api_{name}_ms"] = _median_ms(lambda path=path: client.get(path))
    figures["tree_2000_bytes"] = len(client.get(reads["tree_2000"]).content)
    figures["same_problem_found"] = len(client.get(reads["same_problem_in_100k"]).json())
    return figures


def _browser_figures(base: str, batch: str, job: str) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.get(base + "/static/console.css")  # the origin, to hold the token
        driver.execute_script(f"sessionStorage.setItem('ttcq-token', '{TOKEN}')")

        def page(path: str) -> Callable[[], object]:
            def load() -> object:
                driver.get(base + path)
                return WebDriverWait(driver, 30, poll_frequency=0.005).until(
                    lambda d: d.execute_script("return document.body.dataset.ready"))
            return load

        figures = {f"page_{name}_ms": _median_ms(page(path)) for name, path in (
            ("batch_list", "/"), ("batch_100k", f"/batches/{batch}"),
            ("job_2000_nodes", f"/jobs/{job}"))}
        figures["job_2000_ready_ms_since_navigation"] = float(driver.execute_script(
            "return document.body.dataset.readyMs"))
        figures["job_2000_render_ms_in_page"] = float(driver.execute_script(
            "return document.getElementById('job').dataset.renderMs"))
        figures["job_2000_expand_all_ms"] = round(driver.execute_script(
            "const t = performance.now();"
            "[...document.querySelectorAll('.tools button')][1].click();"
            "document.body.offsetHeight; return performance.now() - t;"), 1)
        figures["job_2000_nodes_drawn"] = driver.execute_script(
            "return document.querySelectorAll('li.node').length")
        return figures
    finally:
        driver.quit()


def main() -> dict[str, Any]:
    with bench_database("ttcq_bench_console") as url:
        started = time.perf_counter()
        with Session(get_engine(url), expire_on_commit=False) as session:
            batch, job = _big_batch(session), _tree_job(session)
            twin = _twin_job(session, batch)
        result: dict[str, Any] = {"jobs": JOBS, "tree_nodes": TREE_NODES, "repeats": REPEATS,
                                  "setup_s": round(time.perf_counter() - started, 1)}
        with _live_api(url) as base:
            result |= _api_figures(base, batch, job, twin)
            if CHROMIUM.exists() and CHROMEDRIVER.exists():
                result |= _browser_figures(base, batch, job)
    save_results("console", [result])
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
