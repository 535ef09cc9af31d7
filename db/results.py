"""Storing a solved job (trace, candidates, cost, curve: one transaction, idempotent)
and reading results back."""

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table
from sqlmodel import Session, SQLModel, col, select

from ttcq.db.bulk import insert_ignoring_conflicts
from ttcq.db.jobs import Claim, finish_job
from ttcq.db.models import (
    BudgetPoint,
    Candidate,
    Job,
    JobCost,
    JobCostBase,
    JobState,
    StepLabel,
    TraceNode,
)
from ttcq.db.result_store import store_rows

Row = dict[str, Any]


@dataclass(frozen=True)
class SolvedJob:
    """A solved job as rows, as the worker hands it over (worker.stored builds it): the
    final answer and its grade, trace nodes, candidates, budget curve and cost. Keys are
    the tables' column names; each row carries its job_id."""

    answer: str | None
    correct: bool | None
    nodes: list[Row]
    candidates: list[Row]
    curve: list[Row]
    cost: Row
    labels: list[Row] = field(default_factory=list)  # step labels of a label job

    def tables(self) -> dict[Table, list[Row]]:
        """Rows per table, model output as Postgres keeps it."""
        tables = {
            _table(TraceNode): _clean(self.nodes, ("text",)),
            _table(Candidate): _clean(self.candidates, ("text", "answer", "canonical")),
            _table(BudgetPoint): _clean(self.curve, ("answer",)),
            _table(JobCost): [self.cost],
        }
        if self.labels:
            tables[_table(StepLabel)] = self.labels
        return tables


def store_result(*, session: Session, claim: Claim, solved: SolvedJob) -> bool:
    """Mark our job succeeded and write its rows, all or nothing. False (nothing written)
    if the job is no longer ours: a reaper gave it to another worker, or it was cancelled."""
    finish: dict[str, Any] = {"answer": _text(solved.answer), "correct": solved.correct}
    tables = solved.tables()
    if session.get_bind().dialect.name == "postgresql":
        return store_rows(session=session, claim=claim, finish=finish, tables=tables)
    if not finish_job(session=session, claim=claim, state=JobState.succeeded, **finish):
        session.rollback()
        return False
    for table, rows in tables.items():
        insert_ignoring_conflicts(session, table, rows)
    session.commit()
    return True


def _clean(rows: list[Row], fields: tuple[str, ...]) -> list[Row]:
    """The rows, those with a NUL in a text field copied without it."""
    return [{**row, **{f: _text(row[f]) for f in fields}}
            if any(row[f] and "\x00" in row[f] for f in fields) else row for row in rows]


def _text(value: str | None) -> str | None:
    """Model output as Postgres stores it: text columns refuse the NUL character."""
    return value.replace("\x00", "\ufffd") if value else value


def _table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined]


def job_trace(*, session: Session, job_id: uuid.UUID) -> list[TraceNode]:
    query = select(TraceNode).where(TraceNode.job_id == job_id).order_by(col(TraceNode.node_id))
    return list(session.exec(query))


def job_candidates(*, session: Session, job_id: uuid.UUID) -> list[Candidate]:
    query = select(Candidate).where(Candidate.job_id == job_id).order_by(col(Candidate.idx))
    return list(session.exec(query))


RESULTS_PAGE = 1000  # jobs read per round of queries when streaming a batch's results
# A result record's fields: (key in the record, column of job), then cost, candidates and
# curve as objects of their columns. Both readers below build records from these.
JOB_KEYS = (("custom_id", "custom_id"), ("line", "line"), ("problem", "problem"),
            ("gold", "gold"), ("meta", "meta"), ("answer", "answer"),
            ("correct", "correct"), ("status", "state"), ("error", "error"),
            ("attempts", "attempts"))
CANDIDATE_FIELDS = ("text", "answer", "extraction", "score", "step_scores", "selected",
                    "finish", "correct")
CURVE_FIELDS = ("n", "answer", "correct")
COST_FIELDS = tuple(JobCostBase.model_fields)


def batch_result_lines(
    *, session: Session, batch_id: uuid.UUID, config: dict[str, Any]
) -> Iterator[str]:
    """batch_results as JSON text, built by Postgres (Postgres only): one query per page
    of jobs, and no Python object per row, which is most of the cost of a large batch."""
    connection = session.connection()
    params = {"batch": batch_id, "strategy": config.get("strategy"), "n": config.get("n"),
              "page": RESULTS_PAGE, "after": 0}
    while page := connection.exec_driver_sql(_RECORDS_SQL, params).all():
        yield from (text for text, _ in page)
        params["after"] = page[-1][1]


def _json_object(pairs: Sequence[tuple[str, str]]) -> str:
    return "json_build_object(" + ", ".join(f"'{key}', {sql}" for key, sql in pairs) + ")"


def _json_rows(table: str, fields: Sequence[str], order: str) -> str:
    item = _json_object([(name, f"x.{name}") for name in fields])
    return (f"COALESCE((SELECT json_agg({item} ORDER BY x.{order}) FROM {table} x "
            f"WHERE x.job_id = j.id), '[]')")


_COST_SQL = ("(SELECT " + _json_object([(name, f"c.{name}") for name in COST_FIELDS])
             + " FROM job_cost c WHERE c.job_id = j.id)")
_RECORDS_SQL = (
    "SELECT " + _json_object([
        *((key, f"j.{column}") for key, column in JOB_KEYS),
        ("strategy", "%(strategy)s::text"), ("n", "%(n)s::int"), ("cost", _COST_SQL),
        ("candidates", _json_rows("candidate", CANDIDATE_FIELDS, "idx")),
        ("budget_curve", _json_rows("budget_point", CURVE_FIELDS, "n")),
    ]) + "::text, j.line FROM job j WHERE j.batch_id = %(batch)s AND j.line > %(after)s "
    "ORDER BY j.line LIMIT %(page)s"
)


def batch_results(
    *, session: Session, batch_id: uuid.UUID, config: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """Every job of the batch in dataset order, finished or not: four queries per page of
    jobs, whatever the batch size, plain rows (no ORM objects), and never more than a
    page in memory."""
    connection = session.connection()
    fields = [Job.id, *(getattr(Job, column) for _, column in JOB_KEYS)]
    after = 0
    while page := connection.execute(
        select(*fields).where(Job.batch_id == batch_id, col(Job.line) > after)
        .order_by(col(Job.line)).limit(RESULTS_PAGE)
    ).all():
        lines = (Job.batch_id == batch_id, col(Job.line) > after, col(Job.line) <= page[-1].line)
        yield from _records(connection, page, config, lines)
        after = page[-1].line


def _records(
    connection: Connection, jobs: Sequence[Any], config: dict[str, Any], lines: tuple[Any, ...]
) -> Iterator[dict[str, Any]]:
    costs = _by_job(connection, JobCost, COST_FIELDS, lines, None)
    candidates = _by_job(connection, Candidate, CANDIDATE_FIELDS, lines, col(Candidate.idx))
    curves = _by_job(connection, BudgetPoint, CURVE_FIELDS, lines, col(BudgetPoint.n))
    for job in jobs:
        cost = costs.get(job.id)
        yield {
            **{key: getattr(job, column) for key, column in JOB_KEYS},
            "strategy": config.get("strategy"), "n": config.get("n"),
            "cost": cost[0] if cost else None,
            "candidates": candidates.get(job.id, []),
            "budget_curve": curves.get(job.id, []),
        }


def _by_job(
    connection: Connection, model: Any, names: Sequence[str], jobs: tuple[Any, ...],
    order: Any,
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Rows of model for the jobs matching `jobs` (a batch's range of lines) as dicts of
    names, grouped by job, in job then `order` order."""
    query = (select(model.job_id, *(getattr(model, name) for name in names))
             .join(Job, Job.id == model.job_id).where(*jobs))
    if order is not None:
        query = query.order_by(col(Job.line), order)
    rows: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for job_id, *values in connection.execute(query):
        rows[job_id].append(dict(zip(names, values, strict=True)))
    return rows
