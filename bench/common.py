"""Where the benchmarks keep their data: a Postgres database of their own, migrated with
ttcq's migrations and dropped after, and a Redis database the benchmarks own (db 5), so
that tests running beside them on the same servers are left alone."""

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ttcq.db.migrate import upgrade
from ttcq.db.session import get_engine

PG_SERVER = os.environ.get("TTCQ_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("TTCQ_BENCH_REDIS", "redis://127.0.0.1:6379/5")


@contextmanager
def bench_database(prefix: str) -> Iterator[str]:
    """The URL of a fresh database migrated to head; dropped on exit, even on error."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = f"{PG_SERVER}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            # FORCE: a worker subprocess killed mid-run may still hold a connection.
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as plain psycopg takes it (no '+psycopg' driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


RESULTS = Path(__file__).parent / "results"


def save_results(name: str, data: Any) -> Path:
    """bench/results/NAME.json, the figures a benchmark measured (committed with it)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
