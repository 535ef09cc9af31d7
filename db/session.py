"""One SQLAlchemy engine per process and database URL; one session per request or task."""

import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import URL, Engine, event, exc
from sqlmodel import Session, create_engine

# A pooled connection idle for longer is pinged before use (it may have outlived a
# database restart). A busy worker uses its connection every few milliseconds, and a
# ping per checkout was a tenth of its time per job; a connection that dies in between
# fails that one operation, which the worker retries.
PING_AFTER_IDLE_SECONDS = 5.0
POOL = {"pool_size": 5, "max_overflow": 45}
# Single-statement writes hold a connection for one round trip: a few stay open.
AUTOCOMMIT_POOL = {"pool_size": 4, "max_overflow": 46}


@lru_cache
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A served-engine worker runs dozens of searches in threads, each with its own short
    # sessions (claim, lease renewals, store): connections beyond the pool are opened on
    # demand and closed when returned.
    engine = create_engine(url, **POOL)
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


@lru_cache
def autocommit_engine(url: URL) -> Engine:
    """A pool of Postgres connections in autocommit, for writes that are one statement."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", **AUTOCOMMIT_POOL)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


def runs_alone(session: Session) -> bool:
    """Whether execute_alone applies: on Postgres, when the session has no transaction
    open (a write inside the caller's transaction must stay inside it)."""
    return session.get_bind().dialect.name == "postgresql" and not session.in_transaction()


def execute_alone(
    session: Session, sql: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run one statement (psycopg placeholders) on Postgres as a transaction of its own,
    on an autocommit connection to the session's database: one round trip, and none of
    the session's bookkeeping, which cost more than the round trip. Errors come as
    SQLAlchemy's, as from the session (OperationalError when the database is away)."""
    bind = session.get_bind()
    url = bind.url if isinstance(bind, Engine) else bind.engine.url
    connection = autocommit_engine(url).raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    except psycopg.Error as error:
        if isinstance(error, psycopg.OperationalError):
            connection.invalidate(error)
        raise exc.DBAPIError.instance(sql, params, error, psycopg.Error) from error
    finally:
        connection.close()


def session_scope(url: str) -> Iterator[Session]:
    with Session(get_engine(url), expire_on_commit=False) as session:
        yield session
