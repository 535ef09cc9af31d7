"""One SQLAlchemy engine per process and database URL; one session per request or task."""

import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, event, exc
from sqlmodel import Session, create_engine

# A pooled connection idle for longer is pinged before use (it may have outlived a
# database restart). A busy worker uses its connection every few milliseconds, and a
# ping per checkout was a tenth of its time per job; a connection that dies in between
# fails that one operation, which the worker retries.
PING_AFTER_IDLE_SECONDS = 5.0


@lru_cache
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Raising DisconnectionError here makes the pool replace the connection."""
    checked_in = record.info.get("checked_in")
    if checked_in is None or time.monotonic() - checked_in < PING_AFTER_IDLE_SECONDS:
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as error:
        raise exc.DisconnectionError(str(error)) from error


def session_scope(url: str) -> Iterator[Session]:
    with Session(get_engine(url), expire_on_commit=False) as session:
        yield session
