"""Bulk inserts that skip rows already stored. On Postgres a whole trace goes in one
statement (arrays through unnest), whatever its size; elsewhere an executemany."""

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, Table, Uuid, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session


def _pg_array_type(column: Any) -> tuple[str, str]:
    """(array type to bind, cast applied to each element in the select list)."""
    kind = column.type
    if isinstance(kind, Boolean):
        return "boolean[]", ""
    if isinstance(kind, Integer):
        return "bigint[]", ""
    if isinstance(kind, Float):
        return "float8[]", ""
    if isinstance(kind, Uuid):
        return "uuid[]", ""
    if isinstance(kind, JSON):
        return "text[]", "::json"
    return "text[]", ""


def _pg_value(column: Any, value: Any) -> Any:
    if isinstance(column.type, JSON) and value is not None:
        return json.dumps(value)
    return value


def copy_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY rows (tuples in the order of columns) into table, in the session's transaction:
    the fastest way into Postgres, and rows may be a stream. An exception raised by the
    stream aborts the COPY and propagates."""
    names = ", ".join(f'"{name}"' for name in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    with driver_cursor(session) as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def driver_cursor(session: Session) -> Any:
    """A psycopg cursor on the session's connection, in its transaction (for COPY, which
    SQLAlchemy does not speak)."""
    driver: Any = session.connection().connection.driver_connection
    return driver.cursor()


def insert_ignoring_conflicts(
    session: Session, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        _insert_unnest(session, table, rows)
        return
    statement = sqlite.insert(table).on_conflict_do_nothing()
    session.exec(statement, params=list(rows))


def _insert_unnest(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    columns = [c for c in table.columns if c.name in rows[0]]
    names = ", ".join(f'"{c.name}"' for c in columns)
    arrays, selects, params = [], [], {}
    for i, column in enumerate(columns):
        array_type, cast = _pg_array_type(column)
        arrays.append(f"CAST(:a{i} AS {array_type})")
        selects.append(f"u.c{i}{cast}")
        params[f"a{i}"] = [_pg_value(column, row[column.name]) for row in rows]
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    sql = (
        f'INSERT INTO "{table.name}" ({names}) SELECT {", ".join(selects)} '
        f"FROM unnest({', '.join(arrays)}) AS u({aliases}) ON CONFLICT DO NOTHING"
    )
    statement = text(sql).bindparams(
        *(bindparam(f"a{i}", type_=postgresql.ARRAY(_element(c))) for i, c in enumerate(columns))
    )
    session.exec(statement, params=params)  # type: ignore[call-overload]


def _element(column: Any) -> Any:
    return postgresql.TEXT() if isinstance(column.type, JSON) else column.type
