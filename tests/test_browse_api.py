"""The /v1 reads the console draws from (api.routes_browse), against a live API, real
Postgres and ground-truth batches: problems filtered, sorted and paged by the database,
failures with reasons, cost sums, a job's tree and its chosen path, each owner's own only."""

from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import col, func, select

from tests.utils.api_factories import BOB, api_settings, auth, running_api
from tests.utils.console_data import (
    FAILURE,
    FAILURE_MESSAGE,
    MARKUP_STEP,
    ConsoleData,
    store_console_batches,
)
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.models import Candidate, Job, JobCost, TraceNode
from ttcq.worker.service import SessionFactory


@pytest.fixture
def data(sessions: SessionFactory) -> ConsoleData:
    return store_console_batches(sessions)


@pytest.fixture
def client(db_url: str, redis_url: str, data: ConsoleData) -> Iterator[httpx.Client]:
    with running_api(api_settings(db_url, redis_url)) as (_, url):
        with httpx.Client(base_url=url, headers=auth()) as client:
            yield client


def test_problems_are_filtered_by_outcome_and_level(client: httpx.Client,
                                                    data: ConsoleData) -> None:
    url = f"/v1/batches/{data.majority_batch}/problems"
    every = client.get(url).json()
    assert (every["total"], every["levels"]) == (4, ["1", "2", "3", "4"])
    failed = client.get(url, params={"outcome": "failed"}).json()["items"]
    assert [(p["line"], p["failure"]) for p in failed] == [(4, FAILURE)]
    correct = client.get(url, params={"outcome": "correct"}).json()["items"]
    assert correct and all(p["correct"] is True for p in correct)
    level = client.get(url, params={"level": "2"}).json()["items"]
    assert [p["level"] for p in level] == ["2"]


def test_problems_sort_by_tokens_and_page(client: httpx.Client, data: ConsoleData) -> None:
    url = f"/v1/batches/{data.majority_batch}/problems"
    most = client.get(url, params={"sort": "-tokens"}).json()["items"]
    tokens = [p["tokens"] for p in most]
    assert tokens == sorted(tokens, reverse=True) and tokens[-1] == 0  # the failed job
    page = client.get(url, params={"sort": "-tokens", "offset": 1, "limit": 2}).json()
    assert (page["total"], [p["tokens"] for p in page["items"]]) == (4, tokens[1:3])
    assert client.get(url, params={"outcome": "lost"}).status_code == 422


def test_failures_name_their_reason_and_error(client: httpx.Client, data: ConsoleData) -> None:
    failures = client.get(f"/v1/batches/{data.majority_batch}/failures").json()
    assert [(f["job_id"], f["failure"], f["error"]) for f in failures] == [
        (str(data.failed_job), FAILURE, FAILURE_MESSAGE)]


def test_cost_sums_the_jobs_costs(client: httpx.Client, data: ConsoleData,
                                  sessions: SessionFactory) -> None:
    cost = client.get(f"/v1/batches/{data.beam_batch}/cost").json()
    with sessions() as session:
        prompt, cached, total = session.exec(select(
            func.sum(JobCost.prompt_tokens), func.sum(JobCost.cached_tokens),
            func.sum(JobCost.prompt_tokens + JobCost.completion_tokens
                     + JobCost.verifier_tokens))
            .join(Job, col(Job.id) == JobCost.job_id).where(Job.batch_id == data.beam_batch)
        ).one()
    assert cost["jobs"] == 4 and (cost["prompt_tokens"], cost["total_tokens"]) == (prompt, total)
    assert cost["cache_hit_rate"] == pytest.approx(cached / prompt)
    assert cost["tokens_per_correct"] == pytest.approx(total / cost["correct"])


def test_the_tree_has_no_texts_and_a_chosen_path_to_the_selected_leaf(
    client: httpx.Client, data: ConsoleData, sessions: SessionFactory,
) -> None:
    tree = client.get(f"/v1/jobs/{data.beam_job}/tree").json()
    with sessions() as session:
        leaf = session.exec(select(Candidate.leaf_node_id).where(
            Candidate.job_id == data.beam_job, col(Candidate.selected))).one()
        stored = session.exec(select(func.count()).select_from(TraceNode).where(
            TraceNode.job_id == data.beam_job)).one()
    nodes = {n["node_id"]: n for n in tree["nodes"]}
    path = tree["chosen_path"]
    assert len(nodes) == stored and "text" not in nodes[0]
    assert (path[0], path[-1], nodes[path[-1]]["status"]) == (0, leaf, "selected")
    assert all(nodes[child]["parent_id"] == parent
               for parent, child in zip(path, path[1:], strict=False))
    assert tree["batch"]["strategy"] == "beam_search"


def test_a_node_is_read_whole(client: httpx.Client, data: ConsoleData) -> None:
    node = client.get(f"/v1/jobs/{data.beam_job}/nodes/{data.markup_node}").json()
    assert (node["text"], node["status"]) == (MARKUP_STEP, "pruned")
    assert node["step_score"] is not None
    assert client.get(f"/v1/jobs/{data.beam_job}/nodes/99999").status_code == 404


def test_same_problem_lists_the_callers_other_jobs_of_it(
    client: httpx.Client, data: ConsoleData, sessions: SessionFactory,
) -> None:
    with sessions() as session:  # the same line, another problem: not a twin
        create_batch(session=session, owner="alice", config={"strategy": "majority"},
                     problems=[ProblemIn(line=1, problem="another problem")])
    twins = client.get(f"/v1/jobs/{data.beam_job}/same-problem").json()
    by_job = {t["job_id"]: t for t in twins}
    assert set(by_job) == {str(data.majority_job), str(data.waiting_job)}  # not bob's
    majority = by_job[str(data.majority_job)]
    assert (majority["batch_id"], majority["strategy"], majority["line"]) == (
        str(data.majority_batch), "majority", 1)
    assert majority["state"] == "succeeded" and majority["tokens"] > 0
    assert by_job[str(data.waiting_job)]["tokens"] == 0  # queued, no cost yet
    assert twins[0]["created_at"] >= twins[1]["created_at"]  # newest batch first
    back = client.get(f"/v1/jobs/{data.majority_job}/same-problem").json()
    assert str(data.beam_job) in {t["job_id"] for t in back}


def test_same_problem_of_another_owners_job_is_not_found(client: httpx.Client,
                                                          data: ConsoleData) -> None:
    assert client.get(f"/v1/jobs/{data.bob_job}/same-problem").status_code == 404
    assert client.get(f"/v1/jobs/{data.bob_job}/same-problem",
                      headers=auth(BOB)).json() == []  # alice's jobs are not bob's twins


def test_another_owners_batch_and_job_are_not_found(client: httpx.Client,
                                                    data: ConsoleData) -> None:
    as_bob = auth(BOB)
    for path in (f"/v1/batches/{data.beam_batch}/problems",
                 f"/v1/batches/{data.beam_batch}/failures", f"/v1/batches/{data.beam_batch}/cost",
                 f"/v1/jobs/{data.beam_job}/tree", f"/v1/jobs/{data.beam_job}/nodes/0",
                 f"/v1/jobs/{data.beam_job}/same-problem"):
        assert client.get(path, headers=as_bob).status_code == 404, path
    assert client.get(f"/v1/batches/{data.bob_batch}/problems").status_code == 404


def test_the_batch_list_carries_tokens_and_rate(client: httpx.Client, data: ConsoleData) -> None:
    listed = {b["id"]: b for b in client.get("/v1/batches").json()}
    beam = listed[str(data.beam_batch)]
    assert beam["tokens"] > 0 and beam["jobs_per_minute"] > 0
    assert str(data.bob_batch) not in listed


def test_the_reads_are_typed_in_the_spec(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"ProblemPage", "ProblemRow", "FailedJob", "BatchCost", "JobTree", "TreeNode",
            "SameProblemJob"} <= set(schemas)
    twins = spec["paths"]["/v1/jobs/{job_id}/same-problem"]["get"]["responses"]["200"]
    assert twins["content"]["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/SameProblemJob"}
    tree = spec["paths"]["/v1/jobs/{job_id}/tree"]["get"]["responses"]["200"]
    assert tree["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobTree"}
    assert "/" not in spec["paths"] and "/batches/{batch_id}" not in spec["paths"]


def test_the_console_pages_are_served(client: httpx.Client, data: ConsoleData) -> None:
    page = client.get(f"/batches/{data.beam_batch}", headers={})
    assert page.status_code == 200 and 'id="login"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/tree.js").status_code == 200
    for bad in ("/batches/not-a-uuid", "/jobs/..%2Fbatches", "/compare?a=x&b="):
        assert client.get(bad).status_code == 404  # ids go into API paths: UUIDs only
