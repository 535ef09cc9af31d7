"""Label jobs end to end, against a live API, real Postgres and Redis, jobs run by the
worker's process_job on the ground-truth engine: `ttcq label` of a dataset and of a stored
batch, labels committed with the job and resumed after a kill, bad sources refused with
nothing queued, and `ttcq export` as TRL rows (JSONL and Parquet) and trees."""

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from sqlalchemy import update
from sqlmodel import col, func, select

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import make_dataset
from tests.utils.api_factories import ALICE, BOB, api_settings, auth, queued_messages, running_api
from ttcq.api.cli import main
from ttcq.db import labels as db_labels
from ttcq.db.jobs import reap_expired
from ttcq.db.models import Batch, Candidate, Job, JobCost, StepLabel, TraceNode, utcnow
from ttcq.worker.engines.base import Completion, GenerationRequest
from ttcq.worker.service import SessionFactory, process_job

PROBLEMS = [{"problem": row["problem"], "answer": row["answer"], "custom_id": f"g{i}"}
            for i, row in enumerate(make_dataset(3, seed=21))]
SEARCH = {"strategy": "majority", "n": 3, "verifier": "none"}


@pytest.fixture
def api(db_url: str, redis_url: str) -> Iterator[tuple[FastAPI, str]]:
    with running_api(api_settings(db_url, redis_url)) as running:
        yield running


@pytest.fixture
def client(api: tuple[FastAPI, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api[1], headers=auth()) as client:
        yield client


def _submit(client: httpx.Client, config: dict[str, Any], problems: list[dict[str, Any]]
            ) -> dict[str, Any]:
    response = client.post("/v1/batches", json={"config": config, "problems": problems})
    assert response.status_code == 201, response.text
    return response.json()


def _jobs(sessions: SessionFactory, batch_id: str) -> list[uuid.UUID]:
    with sessions() as session:
        return list(session.exec(select(Job.id).where(Job.batch_id == uuid.UUID(batch_id))
                                 .order_by(col(Job.line))))


def _run(sessions: SessionFactory, batch_id: str, engine: GroundTruthEngine | None = None
         ) -> None:
    for job_id in _jobs(sessions, batch_id):
        outcome = process_job(sessions=sessions, job_id=job_id, engine=engine or
                              GroundTruthEngine(), worker_name="w", lease_seconds=60,
                              max_attempts=3)
        assert outcome == "succeeded", outcome


def _export(api: tuple[FastAPI, str], batch_id: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["export", batch_id, *args, "--api-url", api[1],
                                       "--token", ALICE])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_labels_of_a_stored_batch_export_as_trl_rows_and_trees(
    client: httpx.Client, api: tuple[FastAPI, str], sessions: SessionFactory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db_labels, "EXPORT_PAGE", 2)  # 3 problems: two pages
    source = _submit(client, SEARCH, PROBLEMS)
    _run(sessions, source["id"])
    response = client.post(f"/v1/batches/{source['id']}/label",
                           json={"method": "math_shepherd", "rollouts": 3, "solutions": 2})
    assert response.status_code == 201, response.text
    labels = response.json()
    assert (labels["strategy"], labels["total"]) == ("math_shepherd", 3)
    _run(sessions, labels["id"])
    rows = [json.loads(line) for line in _export(api, labels["id"]).splitlines()]
    with sessions() as session:
        stored = session.exec(select(StepLabel)).all()
        finished = session.exec(select(func.count()).select_from(Candidate)
                                .where(col(Candidate.job_id).in_(_jobs(sessions, source["id"])),
                                       Candidate.finish == "stop", Candidate.idx < 2)).one()
    assert len(rows) == finished  # one row per labelled solution
    assert [row["line"] for row in rows] == sorted(row["line"] for row in rows)
    assert sum(len(row["labels"]) for row in rows) == len(stored)
    for row in rows:
        assert row["prompt"] in {p["problem"] for p in PROBLEMS}
        assert uuid.UUID(row["source_job_id"]) in _jobs(sessions, source["id"])
        assert len(row["completions"]) == len(row["labels"]) == len(row["soft_labels"])
        assert all(text.startswith("Step ") and not text.endswith("\n") for text in
                   row["completions"])
        assert row["labels"][-1] == row["correct"]  # the last step is the solution's grade
        assert [s > 0 for s in row["soft_labels"]] == row["labels"]
    out = tmp_path / "prm.parquet"
    _export(api, labels["id"], "-o", str(out))
    table = pq.read_table(out)
    assert pa.types.is_list(table.schema.field("completions").type)
    assert table.schema.field("labels").type.value_type == pa.bool_()
    assert table.to_pylist()[0]["labels"] == rows[0]["labels"]
    trees = [json.loads(line) for line in _export(api, labels["id"], "--format",
                                                  "jsonl-tree").splitlines()]
    assert len(trees) == 3
    assert sum(len(tree["solutions"]) for tree in trees) == len(rows)
    step = trees[0]["solutions"][0]["steps"][0]
    assert set(step) == {"text", "rollouts", "successes", "mc_value", "label"}


def test_labelling_a_dataset_samples_its_solutions_first(
    client: httpx.Client, api: tuple[FastAPI, str], sessions: SessionFactory,
) -> None:
    result = CliRunner().invoke(main, [
        "label", "--method", "omega", "--solutions", "3", "--rollouts", "2",
        "--api-url", api[1], "--token", ALICE, _dataset_file(api, PROBLEMS)])
    assert result.exit_code == 0, result.output
    batch_id = result.stdout.strip()
    _run(sessions, batch_id)
    rows = [json.loads(line) for line in _export(api, batch_id).splitlines()]
    assert len(rows) == 9 and {row["method"] for row in rows} == {"omega"}
    for row in rows:  # labels run up to the first wrong step
        assert row["labels"] == [True] * (len(row["labels"]) - 1) + [row["labels"][-1]]
    stats = httpx.get(f"{api[1]}/v1/batches/{batch_id}/labels/stats", headers=auth()).json()
    labels = [label for row in rows for label in row["labels"]]
    wrong_at = Counter(str(len(row["labels"]) - 1) for row in rows if not row["labels"][-1])
    assert (stats["solutions"], stats["steps"], stats["positive"]) == (9, len(labels),
                                                                       sum(labels))
    assert stats["first_wrong_step"] == wrong_at
    with sessions() as session:  # every rollout is a candidate after the 3 solutions
        rollouts = session.exec(select(func.count()).select_from(Candidate).where(
            col(Candidate.job_id).in_(_jobs(sessions, batch_id)), Candidate.idx >= 3)).one()
    assert stats["rollouts"] == rollouts and stats["tokens_per_label"] > 0
    shown = CliRunner().invoke(main, ["status", batch_id, "--api-url", api[1], "--token", ALICE])
    assert f"labels: {len(labels)} steps of 9 solutions" in shown.stdout


def _dataset_file(api: tuple[FastAPI, str], problems: list[dict[str, Any]]) -> str:
    path = Path(f"/tmp/ttcq-label-{uuid.uuid4().hex}.jsonl")
    path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    return str(path)


def test_bad_sources_are_refused_naming_why_and_queue_nothing(
    client: httpx.Client, api: tuple[FastAPI, str], sessions: SessionFactory, redis_url: str,
) -> None:
    no_gold = _submit(client, SEARCH, [{"problem": p["problem"]} for p in PROBLEMS])
    _run(sessions, no_gold["id"])
    unfinished = _submit(client, SEARCH, PROBLEMS)
    queued = queued_messages(redis_url)
    refused = client.post(f"/v1/batches/{no_gold['id']}/label", json={"rollouts": 2})
    assert refused.status_code == 400
    assert "no gold answers" in refused.json()["detail"]["message"]
    refused = client.post(f"/v1/batches/{unfinished['id']}/label", json={})
    assert refused.status_code == 400 and "no succeeded job" in refused.text
    theirs = httpx.post(f"{api[1]}/v1/batches/{unfinished['id']}/label", json={},
                        headers=auth(BOB))
    assert theirs.status_code == 404
    with sessions() as session:
        assert session.exec(select(func.count()).select_from(Batch)).one() == 2
    assert queued_messages(redis_url) == queued
    stats = client.get(f"/v1/batches/{unfinished['id']}/labels/stats")
    assert stats.status_code == 400 and "not a label batch" in stats.text
    missing_gold = client.post("/v1/batches", json={
        "config": {"strategy": "math_shepherd", "verifier": "none"},
        "problems": [PROBLEMS[0], {"problem": "What is 1 + 1?"}]})
    assert missing_gold.status_code == 400
    [error] = missing_gold.json()["detail"]["errors"]
    assert (error["line"], error["field"]) == (2, "answer") and "gold" in error["message"]
    labelled = _submit(client, {"strategy": "omega", "n": 1, "rollouts": 1}, PROBLEMS[:1])
    _run(sessions, labelled["id"])
    again = client.post(f"/v1/batches/{labelled['id']}/label", json={})
    assert again.status_code == 400 and "is a label batch" in again.text
    not_labels = client.get(f"/v1/batches/{unfinished['id']}/labels")
    assert not_labels.status_code == 400 and "ttcq label --from-batch" in not_labels.text


class DiesOnce(GroundTruthEngine):
    """TEST DOUBLE: the ground-truth engine whose `at`-th generate call kills the worker."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def generate(self, requests: list[GenerationRequest]) -> list[list[Completion]]:
        self.calls += 1
        if self.calls == self.at:
            raise Killed()
        return super().generate(requests)


class Killed(BaseException):
    """The worker process died mid-call."""


def test_a_label_job_killed_midway_resumes_and_labels_each_step_once(
    client: httpx.Client, sessions: SessionFactory,
) -> None:
    config = {"strategy": "math_shepherd", "n": 2, "rollouts": 3, "verifier": "none"}
    killed = _submit(client, config, PROBLEMS[:1])
    reference = _submit(client, config, PROBLEMS[:1])
    _run(sessions, reference["id"])
    [job_id] = _jobs(sessions, killed["id"])
    with pytest.raises(Killed):  # dies in its third call: two rounds checkpointed
        process_job(sessions=sessions, job_id=job_id, engine=DiesOnce(3), worker_name="w",
                    lease_seconds=60, max_attempts=3)
    with sessions() as session:
        session.exec(update(Job).where(col(Job.id) == job_id)
                     .values(lease_until=utcnow() - timedelta(seconds=1)))
        assert reap_expired(session=session, max_attempts=3) == [job_id]
        session.commit()
    engine = GroundTruthEngine()
    _run(sessions, killed["id"], engine)

    def stored(batch_id: str) -> tuple[list[Any], int]:
        [job] = _jobs(sessions, batch_id)
        with sessions() as session:
            labels = session.exec(select(StepLabel.candidate, StepLabel.step, StepLabel.rollouts,
                                         StepLabel.successes, StepLabel.soft)
                                  .where(StepLabel.job_id == job)
                                  .order_by(col(StepLabel.candidate), col(StepLabel.step))).all()
            candidates = session.exec(select(func.count()).select_from(Candidate)
                                      .where(Candidate.job_id == job)).one()
        return list(labels), candidates

    labels, candidates = stored(killed["id"])
    assert (labels, candidates) == stored(reference["id"])  # as if never killed
    assert candidates == 2 + sum(rollouts for _, _, rollouts, _, _ in labels)
    assert len({(c, s) for c, s, *_ in labels}) == len(labels)
    with sessions() as session:  # the two rounds saved before the kill were not rolled again
        assert session.get(JobCost, job_id).resumed_calls == 2  # type: ignore[union-attr]


def test_an_mcts_batch_exports_its_q_values_as_soft_labels(
    client: httpx.Client, api: tuple[FastAPI, str], sessions: SessionFactory,
) -> None:
    config = {"strategy": "mcts", "mcts_simulations": 6, "beam_width": 2,
              "verifier": "self_judge"}
    batch = _submit(client, config, PROBLEMS[:2])
    _run(sessions, batch["id"])
    rows = [json.loads(line) for line in _export(api, batch["id"]).splitlines()]
    with sessions() as session:
        candidates = session.exec(select(func.count()).select_from(Candidate).where(
            col(Candidate.job_id).in_(_jobs(sessions, batch["id"])))).one()
        q_of = {(node.job_id, node.text): node for node in session.exec(
            select(TraceNode).where(col(TraceNode.job_id).in_(_jobs(sessions, batch["id"]))))}
    assert len(rows) == candidates and {row["method"] for row in rows} == {"mcts"}
    for row in rows:
        for text, soft, hard in zip(row["completions"], row["soft_labels"], row["labels"],
                                    strict=True):
            node = next(n for (job, t), n in q_of.items()
                        if job == uuid.UUID(row["job_id"]) and t.strip() == text)
            expected = node.q_value if node.q_value is not None else node.agg_score
            assert soft == pytest.approx(expected) and hard == (soft >= 0.5)
    tree = json.loads(_export(api, batch["id"], "--format", "jsonl-tree").splitlines()[0])
    assert set(tree["solutions"][0]["steps"][0]) == {"text", "visits", "q_value", "label"}
