"""`ttcq report`, `ttcq rescore` and `ttcq list`, through the API (a service user's own
batches) and straight against a database (`ttcq run` users), on small ground-truth runs."""

import csv
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from lab.ground_truth.task import make_dataset
from lab.ground_truth_batches import run_batch
from tests.utils.api_factories import ALICE, BOB, api_settings, auth, running_api
from ttcq.api.cli import main
from ttcq.api.datasets import Limits, to_problems
from ttcq.api.embedded import session_factory
from ttcq.db.migrate import upgrade
from ttcq.worker.service import SessionFactory

PROBLEMS = 10
PNG = b"\x89PNG\r\n\x1a\n"
JUDGED = {"verifier": "self_judge", "beam_width": 2}


def problems() -> list[Any]:
    rows = make_dataset(PROBLEMS, seed=3)
    return list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, PROBLEMS)))


def solved(sessions: SessionFactory, owner: str = "alice", **config: Any) -> str:
    return str(run_batch(sessions, problems(), quality=2.0, owner=owner, **config))


@pytest.fixture
def url(db_url: str, redis_url: str) -> Iterator[str]:
    with running_api(api_settings(db_url, redis_url)) as (_, base_url):
        yield base_url


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers=auth()) as client:
        yield client


def ttcq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def via_api(url: str, *args: str) -> Result:
    return ttcq(*args, "--api-url", url, "--token", ALICE)


# The API
def test_the_report_api_counts_lines_levels_and_intervals(
    http: httpx.Client, sessions: SessionFactory
) -> None:
    vote = solved(sessions, strategy="majority", n=4, verifier="none")
    beam = solved(sessions, strategy="beam_search", n=4, **JUDGED)
    response = http.get("/v1/report", params={"batch_id": [vote, beam]})
    assert response.status_code == 200, response.text
    report = response.json()
    assert [line["strategy"] for line in report["lines"]] == ["majority", "beam_search"]
    assert report["levels"] == ["1", "2", "3", "4", "5"]
    every = [p for p in report["points"] if p["level"] is None]
    assert [(p["configuration"], p["budget"]) for p in every] == [
        ("majority", 1), ("majority", 2), ("majority", 4), ("beam_search M=2 · self_judge/min", 4)]
    for point in every:
        assert point["problems"] == PROBLEMS == sum(
            p["problems"] for p in report["points"]
            if p["configuration"] == point["configuration"] and p["budget"] == point["budget"]
            and p["level"] is not None)
        assert point["ci_low"] <= point["accuracy"] <= point["ci_high"]
    # Below the full budget, a run's cost is its share n/N.
    assert every[1]["tokens_per_problem"] == pytest.approx(every[2]["tokens_per_problem"] / 2)


def test_another_users_batch_is_not_in_reach(http: httpx.Client, sessions: SessionFactory
                                             ) -> None:
    theirs = solved(sessions, owner="bob", strategy="majority", n=2, verifier="none")
    assert http.get("/v1/report", params={"batch_id": [theirs]}).status_code == 404
    assert http.post(f"/v1/batches/{theirs}/rescore", json={"selection": "naive"}
                     ).status_code == 404
    mine = http.get("/v1/report", params={"batch_id": [theirs]}, headers=auth(BOB))
    assert mine.status_code == 200


def test_a_rescore_is_stored_and_reported_once_however_often_repeated(
    http: httpx.Client, sessions: SessionFactory
) -> None:
    batch = solved(sessions, strategy="best_of_n", n=4, **JUDGED)
    for _ in range(2):
        response = http.post(f"/v1/batches/{batch}/rescore", json={"selection": "majority"})
        assert response.status_code == 201, response.text
    rescore = response.json()
    assert (rescore["jobs"], rescore["graded"], rescore["selection"]) == (PROBLEMS, PROBLEMS,
                                                                          "majority")
    assert rescore["aggregation"] == "min" and rescore["verifier"] is None
    lines = http.get("/v1/report", params={"batch_id": [batch]}).json()["lines"]
    assert [line["rescore_ids"] for line in lines] == [[], [rescore["id"]]]


def test_the_api_does_not_run_verifiers(http: httpx.Client, sessions: SessionFactory) -> None:
    batch = solved(sessions, strategy="majority", n=2, verifier="none")
    response = http.post(f"/v1/batches/{batch}/rescore", json={"verifier": "checker"})
    assert response.status_code == 422


# The CLI against the API
def test_report_writes_plots_and_tables(url: str, sessions: SessionFactory,
                                        tmp_path: Path) -> None:
    vote = solved(sessions, strategy="majority", n=4, verifier="none")
    dvts = solved(sessions, strategy="dvts", n=4, **JUDGED)
    result = via_api(url, "report", vote, dvts, "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for name in ("accuracy_vs_budget.png", "accuracy_vs_tokens.png", "accuracy_vs_flops.png"):
        assert (out / name).read_bytes().startswith(PNG)
    with (out / "report.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert {r["configuration"] for r in rows} == {"majority", "dvts M=2 · self_judge/min"}
    assert {r["level"] for r in rows} == {"all", "1", "2", "3", "4", "5"}
    page = (out / "report.md").read_text()
    assert "## All problems" in page and "## Level 5" in page and vote in page


def test_list_shows_my_batches_newest_first(url: str, sessions: SessionFactory) -> None:
    first = solved(sessions, strategy="majority", n=2, verifier="none")
    second = solved(sessions, strategy="best_of_n", n=2, **JUDGED)
    solved(sessions, owner="bob", strategy="majority", n=2, verifier="none")
    result = via_api(url, "list")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:5] == ["BATCH", "CREATED", "STRATEGY", "N", "DONE"]
    assert [line.split()[0] for line in lines] == [second, first]
    assert f"{PROBLEMS}/{PROBLEMS}" in lines[0]


def test_rescore_through_the_api_prints_its_id(url: str, sessions: SessionFactory) -> None:
    batch = solved(sessions, strategy="best_of_n", n=2, **JUDGED)
    result = via_api(url, "rescore", batch, "--aggregation", "last")
    assert result.exit_code == 0, result.output
    uuid.UUID(result.stdout.strip())
    assert "rescored 10 solved problems (stored scores, last, naive)" in result.stderr


@pytest.mark.parametrize(("flags", "message"), [
    ((), "give --aggregation, --selection or --verifier"),
    (("--verifier", "checker"), "needs --db URL"),
])
def test_rescore_refuses_what_it_cannot_do(flags: tuple[str, ...], message: str) -> None:
    result = ttcq("rescore", str(uuid.uuid4()), *flags)
    assert result.exit_code != 0 and message in result.stderr


def test_report_names_a_bad_batch_id() -> None:
    result = ttcq("report", "not-an-id", "--db", "sqlite://")
    assert result.exit_code != 0 and "'not-an-id' is not a batch id" in result.stderr


# The CLI straight against a database
@pytest.fixture
def local_db(tmp_path: Path) -> tuple[str, SessionFactory]:
    db = f"sqlite:///{tmp_path / 'local.db'}"
    upgrade(db)
    return db, session_factory(db)


def test_report_and_list_from_a_local_database(local_db: tuple[str, SessionFactory],
                                               tmp_path: Path) -> None:
    db, sessions = local_db
    batch = solved(sessions, owner="local", strategy="weighted_best_of_n", n=4, **JUDGED)
    result = ttcq("report", batch, "--db", db, "-o", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "accuracy_vs_budget.png").read_bytes().startswith(PNG)
    listed = ttcq("list", "--db", db)
    assert listed.exit_code == 0 and batch in listed.stdout
    missing = ttcq("report", str(uuid.uuid4()), "--db", db)
    assert missing.exit_code != 0 and "no such batch" in missing.stderr


def test_rescore_with_a_verifier_runs_against_the_database(
    local_db: tuple[str, SessionFactory], tmp_path: Path
) -> None:
    db, sessions = local_db
    batch = solved(sessions, owner="local", strategy="best_of_n", n=4, **JUDGED)
    result = ttcq("rescore", batch, "--db", db, "--verifier", "checker")
    assert result.exit_code == 0, result.output
    assert "(checker, min, naive)" in result.stderr
    report = ttcq("report", batch, "--db", db, "-o", str(tmp_path / "r"))
    assert report.exit_code == 0, report.output
    assert "rescored (checker/min, naive)" in (tmp_path / "r" / "report.md").read_text()
