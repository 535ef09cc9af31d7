"""Input no dataset should hold, at the live API: any nesting, any byte, any size within
the limits gets a 4xx naming the line and field, never a 500, and stores nothing."""

import io
import json
from collections.abc import Iterator

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.conftest import REDIS_URL
from tests.utils.api_factories import api_settings, auth, count_rows, running_api
from ttcq.api.records import MAX_NESTING
from ttcq.db.models import Batch, Job
from ttcq.db.session import get_engine
from ttcq.worker.service import SessionFactory

DEEP = 5000


@pytest.fixture
def client(db_url: str, redis_url: str) -> Iterator[httpx.Client]:
    with running_api(api_settings(db_url, redis_url)) as (_, url), \
            httpx.Client(base_url=url, headers=auth()) as http:
        yield http


def upload(client: httpx.Client, data: bytes, name: str = "set.jsonl",
           **form: str) -> httpx.Response:
    return client.post("/v1/batches/upload", files={"file": (name, data)}, data=form)


def only_error(response: httpx.Response) -> tuple[int | None, str | None, str]:
    assert response.status_code == 400, response.text
    [error] = response.json()["detail"]["errors"]
    return error["line"], error["field"], error["message"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("line, field", [
    (nested(DEEP), None),  # the line itself: not even an object
    ('{"problem": "p", "tags": ' + nested(DEEP) + "}", "tags"),
    ('{"problem": "p", "tags": ' + nested(MAX_NESTING + 5) + "}", "tags"),  # parses, too deep
])
def test_deep_nesting_in_a_file_names_line_and_field(
    client: httpx.Client, sessions: SessionFactory, line: str, field: str | None
) -> None:
    data = b'{"problem": "fine"}\n' + line.encode()
    at, named, message = only_error(upload(client, data))
    assert (at, named) == (2, field) and "deeper than" in message
    assert count_rows(sessions, Batch) == 0


@pytest.mark.parametrize("value, field, words", [
    ('{"problem": "p", "x": NaN}', None, "NaN"),
    ('{"problem": "p", "x": ' + "9" * 5000 + "}", None, "digits"),
    ('{"problem": "a\\ud800b"}', "problem", "surrogate"),
    ('{"problem": "p", "note": "x\\udfffy"}', "note", "surrogate"),
    ('{"problem": "p", "x\\ud800": 1}', "x\\ud800", "surrogate"),
    ('{"problem": "p", "note": {"deeper": "a\\u0000b"}}', "note", "NUL"),
    ('{"problem": "p", "custom_id": "a\\u0000"}', "custom_id", "NUL"),
])
def test_what_postgres_cannot_hold_names_line_and_field(
    client: httpx.Client, value: str, field: str | None, words: str
) -> None:
    line, named, message = only_error(upload(client, value.encode()))
    assert (line, named) == (1, field) and words in message


def test_a_nul_byte_in_a_csv_is_a_400(client: httpx.Client) -> None:
    line, _, message = only_error(upload(client, b"problem\nfine\nbad\x00\n", "set.csv"))
    assert line == 3 and "NUL" in message


def test_parquet_nan_and_odd_types_are_stored_as_json(
    client: httpx.Client, sessions: SessionFactory
) -> None:
    table = pa.table({"problem": ["p"], "score": [float("nan")], "raw": [b"\x00\xff"],
                      "nested": [{"a": [1.5, float("inf")]}]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    response = upload(client, sink.getvalue(), "set.parquet")
    assert response.status_code == 201, response.text
    with sessions() as session:
        [job] = session.exec(text("SELECT meta::text FROM job")).all()  # type: ignore[call-overload]
    meta = json.loads(job[0])
    assert (meta["score"], meta["nested"]) == (None, {"a": [1.5, None]})
    assert isinstance(meta["raw"], str)


@pytest.mark.parametrize("body, field", [
    ('{"problems": [{"problem": ' + nested(DEEP) + "}]}", "problem"),
    ('{"problems": [{"problem": "p", "t": ' + nested(DEEP) + "}]}", "t"),
])
def test_deep_nesting_in_a_json_body_names_line_and_field(
    client: httpx.Client, body: str, field: str
) -> None:
    response = client.post("/v1/batches", content=body.encode(),
                           headers={"Content-Type": "application/json"})
    line, named, _ = only_error(response)
    assert (line, named) == (1, field)


@pytest.mark.parametrize("body, field", [
    ('{"config": ' + nested(DEEP) + ', "problems": [{"problem": "p"}]}', "config"),
    ('{"problems": [{"problem": "p"}], "name": "a\\u0000b"}', None),
    ('{"problems": [{"problem": "p"}]', None),
    ("[1, 2]", None),
    ('{"problems": {"problem": "p"}}', "problems"),
    ('{"problems": [{"problem": "p"} {"problem": "q"}]}', "problems"),
    (b'{"problems": [{"problem": "caf\xe9"}]}', None),
])
def test_a_body_that_cannot_be_read_is_a_400(
    client: httpx.Client, sessions: SessionFactory, body: str | bytes, field: str | None
) -> None:
    content = body if isinstance(body, bytes) else body.encode()
    response = client.post("/v1/batches", content=content,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    if field is not None:
        assert response.json()["detail"]["errors"][0]["field"] == field
    assert count_rows(sessions, Job) == 0


@pytest.mark.parametrize("body", [
    '{"config": {}}',
    '{"problems": [{"problem": "p"}], "priority": "\\ud800"}',
    '{"problems": [{"problem": "p"}], "fields": {"\\ud800": 1}}',
])
def test_bad_options_are_fastapi_422s(client: httpx.Client, body: str) -> None:
    response = client.post("/v1/batches", content=body.encode(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text


def test_options_may_follow_the_problems(client: httpx.Client) -> None:
    body = {"problems": [{"q": "what?"}], "fields": {"problem": "q"}, "name": "after"}
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "after"


def test_a_deep_upload_config_is_a_400(client: httpx.Client) -> None:
    response = upload(client, b'{"problem": "p"}', config=nested(DEEP))
    assert response.status_code == 400 and "config" in response.json()["detail"]["message"]


# --- properties: whatever comes, the answer is a 2xx or a 4xx, and a 4xx stores nothing ----

_leaves = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(st.characters(codec=None), max_size=8))
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
_keys = st.sampled_from(["problem", "question", "answer", "custom_id", "x"]) | st.text(
    st.characters(codec=None), max_size=4)
_records = st.dictionaries(_keys, _values, max_size=4)
_lines = st.one_of(_records.map(json.dumps), st.binary(max_size=40).map(
    lambda raw: raw.decode("latin-1")))


@pytest.fixture(scope="module")
def fuzz_client(pg_url: str) -> Iterator[httpx.Client]:
    """One API for every example (hypothesis runs many per test)."""
    with running_api(api_settings(pg_url, REDIS_URL)) as (_, url), \
            httpx.Client(base_url=url, headers=auth()) as http:
        yield http
    redis.Redis.from_url(REDIS_URL).flushdb()
    with get_engine(pg_url).begin() as conn:
        conn.execute(text("TRUNCATE batch CASCADE"))


def _never_a_500(response: httpx.Response, stored_before: int, pg_url: str) -> None:
    assert response.status_code in (201, 400, 422), response.text
    if response.status_code != 201:
        with get_engine(pg_url).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM job")).scalar_one() == stored_before


def _jobs(pg_url: str) -> int:
    with get_engine(pg_url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM job")).scalar_one())


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_lines, max_size=6), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_any_file_is_answered_without_a_500(
    fuzz_client: httpx.Client, pg_url: str, lines: list[str], suffix: str
) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    before = _jobs(pg_url)
    _never_a_500(upload(fuzz_client, data, "set" + suffix), before, pg_url)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_as_parquet_are_answered_without_a_500(
    fuzz_client: httpx.Client, pg_url: str, data: bytes
) -> None:
    before = _jobs(pg_url)
    _never_a_500(upload(fuzz_client, b"PAR1" + data, "set.parquet"), before, pg_url)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["problems", "config", "name", "model", "priority",
                                             "fields"]) | st.text(max_size=3),
                            _values | st.lists(_records, max_size=3), max_size=4))
def test_any_json_body_is_answered_without_a_500(
    fuzz_client: httpx.Client, pg_url: str, body: dict[str, object]
) -> None:
    before = _jobs(pg_url)
    content = json.dumps(body).encode()
    response = fuzz_client.post("/v1/batches", content=content,
                                headers={"Content-Type": "application/json"})
    _never_a_500(response, before, pg_url)


def test_a_large_extra_csv_cell_is_kept(client: httpx.Client, sessions: SessionFactory) -> None:
    big = "x" * 300_000  # over the csv module's default cell limit
    response = upload(client, f"problem,notes\nfine,{big}\n".encode(), "set.csv")
    assert response.status_code == 201, response.text
    with sessions() as session:
        [row] = session.exec(text("SELECT meta->>'notes' FROM job")).all()  # type: ignore[call-overload]
    assert row[0] == big
