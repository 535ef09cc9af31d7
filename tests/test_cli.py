"""The ttcq CLI as an API client (submit, status, results, cancel) against a live server."""

import csv
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect
from sqlmodel import col, select

from tests.utils.api_factories import ALICE, api_settings, auth, running_api, store_solution
from ttcq.api.cli import main
from ttcq.db.attempts import fail_job
from ttcq.db.jobs import claim_job
from ttcq.db.models import Job
from ttcq.db.session import get_engine
from ttcq.worker.search.config import load_recipe, make_config
from ttcq.worker.service import SessionFactory

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 2 more. How many apples?", "answer": "3+2=5\n#### 5"},
    {"question": "A box holds 6 eggs. How many eggs in 2 boxes?", "answer": "6*2=12\n#### 12"},
]


@pytest.fixture
def url(db_url: str, redis_url: str) -> Iterator[str]:
    with running_api(api_settings(db_url, redis_url)) as (_, base_url):
        yield base_url


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS))
    return path


def ttcq(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--api-url", url, "--token", ALICE])


def submitted(url: str, dataset: Path, *flags: str) -> str:
    result = ttcq(url, "submit", str(dataset), "--n", "2", *flags)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def batch_of(url: str, batch_id: str) -> dict:
    return httpx.get(f"{url}/v1/batches/{batch_id}", headers=auth()).json()


def jobs_of(sessions: SessionFactory) -> list[uuid.UUID]:
    with sessions() as session:
        return list(session.exec(select(Job.id).order_by(col(Job.line))))


def test_submit_prints_only_the_batch_id(url: str, dataset: Path) -> None:
    batch_id = submitted(url, dataset, "--name", "gsm", "--priority", "5")
    batch = batch_of(url, str(uuid.UUID(batch_id)))
    assert (batch["total"], batch["name"], batch["priority"], batch["config"]["n"]) == (
        2, "gsm", 5, 2)


def test_flags_override_the_recipe(url: str, dataset: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("strategy: best_of_n\nn: 8\ntemperature: 0.3\nverifier: self_judge\n")
    batch_id = submitted(url, dataset, "--config", str(recipe))
    config = batch_of(url, batch_id)["config"]
    assert (config["strategy"], config["n"], config["temperature"], config["verifier"]) == (
        "best_of_n", 2, 0.3, "self_judge")


def test_submit_prints_line_errors_and_fails(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "fine"}\n{"answer": "3"}\n{"problem": 7}\n')
    result = ttcq(url, "submit", str(bad))
    assert result.exit_code != 0
    assert "line 2, field problem: missing or empty" in result.stderr
    assert "line 3, field problem: expected a string, got int" in result.stderr


def test_submit_with_an_impossible_config_fails(url: str, dataset: Path) -> None:
    result = ttcq(url, "submit", str(dataset), "--strategy", "beam_search", "--n", "6",
                  "--beam-width", "4")
    assert result.exit_code != 0 and "beam_width" in result.stderr


def test_submit_passes_the_adaptive_search_flags(url: str, dataset: Path) -> None:
    batch_id = submitted(url, dataset, "--strategy", "particle_filtering", "--verifier",
                         "self_judge", "--pf-temperature", "0.5", "--pf-rounds", "2")
    config = batch_of(url, batch_id)["config"]
    assert (config["strategy"], config["pf_temperature"], config["pf_rounds"]) == (
        "particle_filtering", 0.5, 2)
    result = ttcq(url, "submit", str(dataset), "--strategy", "beam_search", "--early-stop", "0.8")
    assert result.exit_code != 0 and "early_stop" in result.stderr


def test_status_prints_counts(url: str, dataset: Path) -> None:
    batch_id = submitted(url, dataset)
    result = ttcq(url, "status", batch_id)
    assert result.exit_code == 0
    assert "0/2 done" in result.stdout and "queued=2" in result.stdout


def test_status_watch_follows_until_every_job_is_final(
    url: str, dataset: Path, sessions: SessionFactory
) -> None:
    batch_id = submitted(url, dataset)
    first, second = jobs_of(sessions)
    store_solution(sessions, first, ["5"])
    later = threading.Timer(0.5, store_solution, (sessions, second, ["11"]))
    later.start()
    result = ttcq(url, "status", batch_id, "--watch", "--interval", "0.1")
    later.join()
    assert result.exit_code == 0, result.output
    assert "2/2 done" in result.stdout and "1/2 correct (50.0%)" in result.stdout


def test_status_of_an_unknown_batch_fails(url: str) -> None:
    result = ttcq(url, "status", str(uuid.uuid4()))
    assert result.exit_code != 0 and "no such batch" in result.stderr


def test_cancel_prints_the_cancelled_counts(url: str, dataset: Path) -> None:
    batch_id = submitted(url, dataset)
    result = ttcq(url, "cancel", batch_id)
    assert result.exit_code == 0 and "cancelled=2" in result.stdout


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_results_write_one_row_per_problem(
    url: str, dataset: Path, sessions: SessionFactory, tmp_path: Path, suffix: str
) -> None:
    batch_id = submitted(url, dataset)
    store_solution(sessions, jobs_of(sessions)[0], ["5", "4"])
    out = tmp_path / f"out{suffix}"
    assert ttcq(url, "results", batch_id, "-o", str(out)).exit_code == 0
    first, second = read_rows(out)
    assert (first["gold"], first["answer"], second["status"]) == ("5", "5", "queued")
    candidates = first["candidates"] if suffix == ".jsonl" else json.loads(first["candidates"])
    assert [c["selected"] for c in candidates] == [True, False]
    prompt_tokens = (first["cost"]["prompt_tokens"] if suffix == ".jsonl"
                     else int(first["cost_prompt_tokens"]))
    assert prompt_tokens == 40


def test_results_refuse_an_unknown_format(url: str, dataset: Path, tmp_path: Path) -> None:
    batch_id = submitted(url, dataset)
    result = ttcq(url, "results", batch_id, "-o", str(tmp_path / "out.xlsx"))
    assert result.exit_code != 0 and ".parquet" in result.stderr


def test_an_unreachable_api_is_a_clean_error(dataset: Path) -> None:
    result = ttcq("http://127.0.0.1:1", "submit", str(dataset))
    assert result.exit_code == 1 and "cannot reach the API" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = CliRunner().invoke(main, ["db", "upgrade", "--url", url])
    assert result.exit_code == 0, result.output
    assert {"batch", "job", "candidate"} <= set(inspect(get_engine(url)).get_table_names())
    get_engine(url).dispose()


def test_worker_command_starts_the_worker_with_its_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict] = []
    monkeypatch.setattr("ttcq.worker.main.run_worker", lambda **kwargs: calls.append(kwargs))
    result = CliRunner().invoke(main, ["worker", "--concurrency", "2", "--queue", "gpu-a"])
    assert result.exit_code == 0, result.output
    assert calls == [{"concurrency": 2, "queue": "gpu-a", "loglevel": "INFO"}]


def test_api_command_serves_the_app_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: calls.append((args, kwargs)))
    result = CliRunner().invoke(main, ["api", "--port", "9123"])
    assert result.exit_code == 0, result.output
    assert calls == [(("ttcq.api.app:create_app",),
                      {"factory": True, "host": "127.0.0.1", "port": 9123})]


RECIPES = sorted((Path(__file__).parents[1] / "examples" / "recipes").glob("*.yaml"))


def test_recipes_are_shipped() -> None:
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_are_valid_configs(recipe: Path) -> None:
    config = make_config(**load_recipe(recipe))
    assert f"strategy: {config.strategy}" in recipe.read_text()


def test_status_shows_failures_by_reason_and_retry_runs_them_again(
    url: str, dataset: Path, sessions: SessionFactory
) -> None:
    batch_id = submitted(url, dataset)
    first, _ = jobs_of(sessions)
    with sessions() as session:
        claim = claim_job(session=session, job_id=first, worker="w", lease_seconds=60,
                          max_attempts=3)
        assert claim is not None
        fail_job(session=session, claim=claim, failure="time_limit",
                 message="time limit of 3600 s exceeded", progress=False)
    shown = ttcq(url, "status", batch_id)
    assert "failed by reason: time_limit=1" in shown.stdout
    assert f"ttcq retry {batch_id}" in shown.stdout
    retried = ttcq(url, "retry", batch_id)
    assert retried.exit_code == 0, retried.output
    assert "1 failed jobs queued again" in retried.stderr
    assert "failed=0" in retried.stdout and "failed by reason" not in retried.stdout
