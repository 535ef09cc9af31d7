"""Bulk writes: COPY on Postgres (rows may be a stream), and inserts that skip rows
already stored."""

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session


def copy_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY rows (tuples in the order of columns) into table, in the session's transaction:
    the fastest way into Postgres, and rows may be a stream. An exception raised by the
    stream aborts the COPY and propagates."""
    names = ", ".join(f'"{name}"' for name in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    try:
        with driver_cursor(session) as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.OperationalError as error:
        # Raised past SQLAlchemy, which would otherwise roll back on a dead connection.
        session.connection().invalidate(error)
        raise


def driver_cursor(session: Session) -> Any:
    """A psycopg cursor on the session's connection, in its transaction (for COPY, which
    SQLAlchemy does not speak)."""
    driver: Any = session.connection().connection.driver_connection
    return driver.cursor()


def insert_ignoring_conflicts(
    session: Session, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows, skipping those whose key is already stored. Each dialect's own
    insert: SQLAlchemy 2.1 no longer compiles SQLite's ON CONFLICT for Postgres."""
    if rows:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.exec(dialect.insert(table).on_conflict_do_nothing(), params=list(rows))
