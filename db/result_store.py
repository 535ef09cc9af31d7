"""Storing a solved job on Postgres in as few round trips as its size allows.

A result of up to COPY_MIN_ROWS trace nodes is one statement: data-modifying CTEs finish
the job, fenced by its attempt, and insert each table's rows from arrays (unnest), every
insert joined to the fence so that nothing is written unless the job was still ours. It
commits on its own, without waiting for the disk (db.jobs.relaxed_commit says why that
is safe for a result). A larger trace goes through COPY after that statement, in the same
transaction: COPY writes rows about twice as fast as INSERT ... SELECT, but cannot skip
conflicts. None can occur: the fence lets exactly one attempt write a job's rows, once.
Should one occur anyway (rows written behind the fence's back), the store is redone as
the single statement, whose inserts skip rows already there (ON CONFLICT DO NOTHING)."""

import json
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import JSON, Boolean, Float, Integer, Table, Uuid
from sqlmodel import Session

from db.bulk import copy_rows
from db.jobs import Claim, one_statement_connection
from db.models import TraceNode, utcnow

COPY_MIN_ROWS = 500  # trace nodes from which COPY beats the arrays of one statement
TRACE: Table = TraceNode.__table__  # type: ignore[attr-defined]
Rows = list[dict[str, Any]]

FINISH = """finished AS (
    UPDATE job SET state = %(state)s, error = NULL, lease_until = NULL,
        finished_at = %(finished_at)s, answer = %(answer)s, correct = %(correct)s
    WHERE id = %(job_id)s AND state = 'running' AND attempts = %(attempt)s
    RETURNING id)"""
# count: 1 if the fence held. set_config: this transaction commits asynchronously.
RESULT = "SELECT count(*), set_config('synchronous_commit', 'off', true) FROM finished"


def store_rows(
    *, session: Session, claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows]
) -> bool:
    """Finish our job as succeeded with finish's values (answer, correct) and write its
    rows; False, and nothing written, if the job is no longer ours."""
    if len(tables.get(TRACE, ())) < COPY_MIN_ROWS:
        return _in_one_statement(session, claim, finish, tables)
    try:
        return _statement_then_copy(session, claim, finish, tables)
    except UniqueViolation:
        session.rollback()
        return _in_one_statement(session, claim, finish, tables)


def _in_one_statement(
    session: Session, claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows]
) -> bool:
    sql, params = _statement(claim, finish, tables)
    stored = one_statement_connection(session).exec_driver_sql(sql, params).one()[0] == 1
    session.commit()
    return stored


def _statement_then_copy(
    session: Session, claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows]
) -> bool:
    trace = tables[TRACE]
    sql, params = _statement(claim, finish, {t: r for t, r in tables.items() if t is not TRACE})
    if session.connection().exec_driver_sql(sql, params).one()[0] != 1:
        session.rollback()
        return False
    columns = [column.name for column in TRACE.columns]
    copy_rows(session, TRACE, columns, ([row[c] for c in columns] for row in trace))
    session.commit()
    return True


def _statement(
    claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows]
) -> tuple[str, dict[str, Any]]:
    params = {"state": "succeeded", "finished_at": utcnow(), "job_id": claim.job_id,
              "attempt": claim.attempt, **finish}
    ctes = [FINISH]
    for table, rows in tables.items():
        ctes.append(_insert_cte(table, rows, params))
    return "WITH " + ",\n".join(ctes) + "\n" + RESULT, params


def _insert_cte(table: Table, rows: Rows, params: dict[str, Any]) -> str:
    """An insert of rows into table for the fenced job, its arrays added to params."""
    columns = [c for c in table.columns if c.name != "job_id"]
    arrays, selects = [], []
    for i, column in enumerate(columns):
        name = f"{table.name}_{i}"
        array_type, cast = _pg_array_type(column)
        params[name] = [_pg_value(column, row[column.name]) for row in rows]
        arrays.append(f"%({name})s::{array_type}")
        selects.append(f"u.c{i}{cast}")
    names = ", ".join(f'"{c.name}"' for c in columns)
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    return (f'w_{table.name} AS (INSERT INTO "{table.name}" ("job_id", {names}) '
            f"SELECT finished.id, {', '.join(selects)} FROM finished, "
            f"unnest({', '.join(arrays)}) AS u({aliases}) ON CONFLICT DO NOTHING)")


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
