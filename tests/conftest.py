"""Shared fixtures: the real SmolLM2 model, a fresh migrated Postgres database, Redis."""

import os
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlmodel import Session, SQLModel

from lab.recording import SGLangRecorder
from lab.servers import RunningServer, server_paths, sglang_server
from ttcq.db.migrate import upgrade
from ttcq.db.session import get_engine
from ttcq.worker.engines.llamacpp import LlamaCppEngine
from ttcq.worker.engines.sglang import SGLangEngine

PG_SERVER = os.environ.get("TTCQ_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("TTCQ_TEST_REDIS", "redis://127.0.0.1:6379/15")

# Test tiers, by what a test needs (`make test-fast` runs the first two, `make test` all):
# unit, no I/O; integration, Postgres, Redis, llama.cpp and Celery in this process;
# servers, the real SGLang and vLLM servers, worker processes killed and restarted, and
# the statistical evidence runs. A module marks itself `servers`; the rest is sorted by
# the fixtures a test takes.
SERVER_FIXTURES = {"sglang", "sglang_engine", "sglang_recorded", "vllm", "reward_servers"}
IO_FIXTURES = {"engine", "pg_url", "db_url", "sessions", "fast_sessions", "redis_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("servers"):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVER_FIXTURES:
            item.add_marker(pytest.mark.servers)
        elif fixtures & IO_FIXTURES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def engine() -> LlamaCppEngine:
    """The real SmolLM2-135M-Instruct model, loaded once."""
    return LlamaCppEngine(n_ctx=2048)


@pytest.fixture(scope="session")
def sglang(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real SGLang 0.5.23 server with SmolLM2-135M, started once per test session."""
    log = tmp_path_factory.mktemp("servers") / "sglang.log"
    with sglang_server(server_paths()["TTCQ_POLICY_MODEL_DIR"], log) as server:
        yield server


@pytest.fixture(scope="session")
def sglang_engine(sglang: RunningServer) -> Iterator[SGLangEngine]:
    engine = SGLangEngine(sglang.url)
    yield engine
    engine.close()


@pytest.fixture
def sglang_recorded(sglang: RunningServer) -> Iterator[tuple[SGLangEngine, SGLangRecorder]]:
    """A fresh engine on the session's SGLang server whose client records every reply."""
    client = SGLangRecorder(sglang.url)
    engine = SGLangEngine(sglang.url, server=client)
    yield engine, client
    engine.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of its own for this test session, migrated to head, dropped after."""
    name = f"ttcq_test_{uuid.uuid4().hex[:8]}"
    url = f"{PG_SERVER}/{name}"
    upgrade(url)
    yield url
    get_engine(url).dispose()
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def db_url(pg_url: str) -> Iterator[str]:
    """The session's database, emptied before each test."""
    with get_engine(pg_url).begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    yield pg_url


@pytest.fixture(scope="module")
def fast_sessions(pg_url: str) -> Iterator[Any]:
    """For a module that stores thousands of small results: the session's database emptied
    once, and sessions that do not wait for the disk at each commit (durability is not
    under test there; the commits would otherwise dominate)."""
    url = f"{pg_url}?options=-csynchronous_commit%3Doff"
    with get_engine(pg_url).begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} CASCADE"))

    @contextmanager
    def make() -> Iterator[Session]:
        with Session(get_engine(url), expire_on_commit=False) as session:
            yield session

    yield make
    get_engine(url).dispose()


@pytest.fixture
def sessions(db_url: str):  # type: ignore[no-untyped-def]
    """A session factory, as the worker uses it."""

    @contextmanager
    def make() -> Iterator[Session]:
        with Session(get_engine(db_url), expire_on_commit=False) as session:
            yield session

    def factory() -> AbstractContextManager[Session]:
        return make()

    return factory


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()
