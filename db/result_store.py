"""Storing a solved job on Postgres in as few round trips as its size allows.

A result of fewer than COPY_MIN_ROWS trace nodes is one statement: data-modifying CTEs
finish the job, fenced by its attempt, and insert each table's rows from one JSON
parameter (json_to_recordset), every insert joined to the fence so that nothing is
written unless the job was still ours. It commits on its own, without waiting for the
disk (db.jobs.RELAXED_COMMIT says why that is safe for a result). A larger trace goes
through COPY after that statement, in the same transaction: COPY writes rows about
twice as fast as INSERT ... SELECT.

Neither skips conflicts, which cost a speculative insertion per row: none can occur,
because the fence lets exactly one attempt write a job's rows, once. Should one occur
anyway (rows written behind the fence's back), the store is redone as the single
statement with ON CONFLICT DO NOTHING, keeping the rows already there."""

import json
import math
from functools import cache
from typing import Any

from psycopg.errors import UniqueViolation
from sqlalchemy import JSON, Boolean, Float, Integer, Table, Uuid
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from ttcq.db.bulk import copy_rows
from ttcq.db.jobs import RELAXED_COMMIT, Claim
from ttcq.db.models import TraceNode, utcnow
from ttcq.db.session import execute_alone, runs_alone

COPY_MIN_ROWS = 500  # trace nodes from which COPY beats the arrays of one statement
TRACE: Table = TraceNode.__table__  # type: ignore[attr-defined]
Rows = list[dict[str, Any]]

FINISH = """finished AS (
    UPDATE job SET state = %(state)s, error = NULL, lease_until = NULL,
        finished_at = %(finished_at)s, answer = %(answer)s, correct = %(correct)s
    WHERE id = %(job_id)s AND state = 'running' AND attempts = %(attempt)s
    RETURNING id)"""
SKIP_CONFLICTS = " ON CONFLICT DO NOTHING"
# count: 1 if the fence held. set_config: this transaction commits asynchronously.
RESULT = f"SELECT count(*), {RELAXED_COMMIT} FROM finished"


def store_rows(
    *, session: Session, claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows]
) -> bool:
    """Finish our job as succeeded with finish's values (answer, correct) and write its
    rows; False, and nothing written, if the job is no longer ours."""
    try:
        if len(tables.get(TRACE, ())) < COPY_MIN_ROWS:
            return _in_one_statement(session, claim, finish, tables, on_conflict="")
        return _statement_then_copy(session, claim, finish, tables)
    except (UniqueViolation, IntegrityError) as error:
        if not _is_unique_violation(error):
            raise
        session.rollback()
        return _in_one_statement(session, claim, finish, tables, on_conflict=SKIP_CONFLICTS)


def _is_unique_violation(error: Exception) -> bool:
    cause = getattr(error, "orig", error)
    return isinstance(cause, UniqueViolation)


def _in_one_statement(
    session: Session, claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows],
    on_conflict: str,
) -> bool:
    sql, params = _statement(claim, finish, tables, on_conflict)
    if runs_alone(session):
        return bool(execute_alone(session, sql, params)[0][0] == 1)
    stored = session.connection().exec_driver_sql(sql, params).one()[0] == 1
    session.commit()
    return stored


def _statement_then_copy(
    session: Session, claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows]
) -> bool:
    rest = {table: rows for table, rows in tables.items() if table is not TRACE}
    sql, params = _statement(claim, finish, rest, on_conflict="")
    if session.connection().exec_driver_sql(sql, params).one()[0] != 1:
        session.rollback()
        return False
    columns = [column.name for column in TRACE.columns]
    copy_rows(session, TRACE, columns, ([row[c] for c in columns] for row in tables[TRACE]))
    session.commit()
    return True


def _statement(
    claim: Claim, finish: dict[str, Any], tables: dict[Table, Rows], on_conflict: str
) -> tuple[str, dict[str, Any]]:
    """The fenced statement and its parameters: each table's rows as one JSON array
    (json_to_recordset), which the json module encodes far faster than psycopg adapts
    a dozen Python lists."""
    params = {"state": "succeeded", "finished_at": utcnow(), "job_id": claim.job_id,
              "attempt": claim.attempt, **finish}
    ctes = [FINISH]
    for table, rows in tables.items():
        params[table.name] = _json_rows(table, rows)
        ctes.append(_insert_cte(table, on_conflict))
    return "WITH " + ",\n".join(ctes) + "\n" + RESULT, params


@cache
def _insert_cte(table: Table, on_conflict: str) -> str:
    """An insert of the JSON rows of parameter table.name for the fenced job."""
    columns = [c for c in table.columns if c.name != "job_id"]
    names = ", ".join(f'"{c.name}"' for c in columns)
    fields = ", ".join(f'"{c.name}" {_pg_type(c)}' for c in columns)
    return (f'w_{table.name} AS (INSERT INTO "{table.name}" ("job_id", {names}) '
            f"SELECT finished.id, {names} FROM finished, "
            f"json_to_recordset(%({table.name})s::json) AS r({fields}){on_conflict})")


def _pg_type(column: Any) -> str:
    kind = column.type
    for sql_type, pg in ((Boolean, "boolean"), (Integer, "bigint"), (Float, "float8"),
                         (Uuid, "uuid"), (JSON, "json")):
        if isinstance(kind, sql_type):
            return pg
    return "text"


def _json_rows(table: Table, rows: Rows) -> str:
    """rows as a JSON array; NaN and infinities, which JSON cannot write, as the strings
    Postgres reads them from."""
    try:
        return json.dumps(rows, allow_nan=False, default=str)
    except ValueError:
        return json.dumps([{k: _finite(v) for k, v in row.items()} for row in rows],
                          default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    return value
