"""`ttcq list`, `ttcq report` and `ttcq rescore`: against the API (a service user's own
batches) or, with --db URL, straight against a database (`ttcq run` users). Reports are
drawn here, from numbers the API or the database counted."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import click
from sqlmodel import Session

from ttcq.api.cli_options import api_client, client_options
from ttcq.worker.search.config import Aggregation, Selection, VerifierName

if TYPE_CHECKING:
    from ttcq.api.report.data import Report
    from ttcq.worker.engines.base import Engine
    from ttcq.worker.verifiers.base import Verifier
    from ttcq.worker.verifiers.factory import ServedVerifiers

DB_HELP = "read (and write) this database directly instead of the API, as `ttcq run` does"


def _ids(values: tuple[str, ...]) -> list[uuid.UUID]:
    ids = []
    for value in values:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a batch id", param_hint="BATCH") from None
    return ids


@contextmanager
def _database(url: str) -> Iterator[Session]:
    """A session on a database migrated to the newest schema (as `ttcq run` leaves it)."""
    from ttcq.db.migrate import upgrade
    from ttcq.db.session import get_engine, session_scope

    upgrade(url)
    try:
        yield from session_scope(url)
    finally:
        get_engine(url).dispose()


def _local_batch(session: Session, batch_id: uuid.UUID) -> Any:
    from ttcq.db.batches import get_batch

    batch = get_batch(session=session, batch_id=batch_id)
    if batch is None:
        raise click.ClickException(f"no such batch {batch_id}")
    return batch


# ttcq list
@click.command("list")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--db", "db_url", default=None, help=DB_HELP)
@client_options
def list_command(limit: int, db_url: str | None, api_url: str | None, token: str | None) -> None:
    """Your batches, newest first, with their progress and accuracy so far."""
    if db_url:
        rows = _local_list(db_url, limit)
    else:
        with api_client(api_url, token) as client:
            rows = client.batches(limit)
    for line in batch_table(rows):
        click.echo(line)


def _local_list(url: str, limit: int) -> list[dict[str, Any]]:
    from ttcq.api.schemas import BatchPublic
    from ttcq.db.queries_api import batch_progress
    from ttcq.db.reports import recent_batches

    with _database(url) as session:
        batches = recent_batches(session=session, limit=limit)
        progress = batch_progress(session=session, batch_ids=[b.id for b in batches])
        return [BatchPublic.of(b, progress[b.id]).model_dump(mode="json") for b in batches]


def batch_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per batch under a header: what `ttcq list` prints."""
    if not rows:
        return ["no batches yet"]
    header = ("BATCH", "CREATED", "STRATEGY", "N", "DONE", "FAILED", "ACCURACY", "NAME")
    table = [header] + [_batch_cells(row) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in table]


def _batch_cells(row: dict[str, Any]) -> tuple[str, ...]:
    created = datetime.fromisoformat(row["created_at"]).astimezone()
    accuracy = row.get("accuracy")
    return (
        row["id"], created.strftime("%Y-%m-%d %H:%M"), row["strategy"],
        str(row["config"].get("n", "")), f"{row['done']}/{row['total']}",
        str(row["counts"].get("failed", 0)),
        "–" if accuracy is None else f"{accuracy:.1%} of {row['graded']}", row["name"],
    )


# ttcq report
@click.command("report")
@click.argument("batch_ids", metavar="BATCH...", nargs=-1, required=True)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("report"), show_default=True, help="directory for plots and tables")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@client_options
def report_command(batch_ids: tuple[str, ...], out: Path, db_url: str | None,
                   api_url: str | None, token: str | None) -> None:
    """Plots (PNG) of accuracy against budget, tokens and FLOPs, one line per
    configuration and a panel per level, with a CSV and a markdown table of the numbers."""
    from ttcq.api.report.data import Report

    ids = _ids(batch_ids)
    if db_url:
        report = _local_report(db_url, ids)
    else:
        with api_client(api_url, token) as client:
            report = Report.model_validate(client.report([str(i) for i in ids]))
    for path in write_report(report, out):
        click.echo(str(path))


def _local_report(url: str, ids: list[uuid.UUID]) -> "Report":
    from ttcq.api.report.data import build_report

    with _database(url) as session:
        batches = [_local_batch(session, batch_id) for batch_id in dict.fromkeys(ids)]
        return build_report(session=session, batches=batches)


def write_report(report: "Report", out: Path) -> list[Path]:
    from ttcq.api.report.draw import draw
    from ttcq.api.report.tables import write_csv, write_markdown

    if not report.points:
        raise click.ClickException("nothing to report yet: no batch has a solved problem")
    out.mkdir(parents=True, exist_ok=True)
    written = draw(report, out)
    write_csv(report, out / "report.csv")
    write_markdown(report, out / "report.md")
    return [*written, out / "report.csv", out / "report.md"]


# ttcq rescore
@click.command("rescore")
@click.argument("batch_id", metavar="BATCH")
@click.option("--aggregation", type=click.Choice(get_args(Aggregation)), default=None,
              help="step-score aggregation [default: the batch's]")
@click.option("--selection", type=click.Choice(get_args(Selection)), default=None,
              help="final answer selection [default: the batch's]")
@click.option("--verifier", type=click.Choice(get_args(VerifierName)), default=None,
              help="score the stored steps again with this verifier (needs --db)")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@client_options
def rescore_command(batch_id: str, aggregation: str | None, selection: str | None,
                    verifier: str | None, db_url: str | None, api_url: str | None,
                    token: str | None) -> None:
    """Choose the batch's answers again from its stored candidates, without generating:
    another aggregation, selection or verifier. Prints the rescore id; reports show the
    rescore as a line of its own."""
    (batch,) = _ids((batch_id,))
    if aggregation is None and selection is None and verifier is None:
        raise click.UsageError("give --aggregation, --selection or --verifier")
    if verifier is not None and not db_url:
        raise click.UsageError("--verifier runs the verifier here, on the stored steps: "
                               "it needs --db URL (the API rescores with stored scores only)")
    if db_url:
        judge, n_params, served = _verifier(verifier) if verifier else (None, 0, None)
        try:
            result = _local_rescore(db_url, batch, aggregation, selection, judge, n_params)
        finally:
            if served is not None:
                served.close()
    else:
        with api_client(api_url, token) as client:
            result = client.rescore(str(batch), aggregation=aggregation, selection=selection)
    click.echo(result["id"])
    click.echo(_rescore_summary(result), err=True)


def _verifier(name: str) -> tuple["Verifier", int, "ServedVerifiers"]:
    """The verifier by name, built from the worker's settings (TTCQ_ENGINE and the PRM and
    ORM servers), the parameters of the model that judges (for FLOPs), and the servers
    (to close when done)."""
    from ttcq.settings import get_settings
    from ttcq.worker.backends import make_engine, make_served_verifiers
    from ttcq.worker.verifiers.factory import ServedVerifiers, make_verifier

    settings = get_settings()
    served = (make_served_verifiers(settings) if name in ("prm", "orm", "classifier_prm")
              else ServedVerifiers())
    judge = served.prm_engine if name == "prm" else None
    if name == "self_judge" or (name == "prm" and judge is None):
        judge = make_engine(settings)  # the policy model judges
    # checker, orm, classifier_prm and none never touch the policy engine.
    verifier = make_verifier(name, cast("Engine", judge), served)
    return verifier, judge.info.n_params if judge is not None else 0, served


def _local_rescore(url: str, batch_id: uuid.UUID, aggregation: Any, selection: Any,
                   verifier: "Verifier | None", n_params: int) -> dict[str, Any]:
    from ttcq.api.routes_reports import rescore_public
    from ttcq.worker.rescoring import RescoreError, rescore_batch

    with _database(url) as session:
        batch = _local_batch(session, batch_id)
        try:
            summary = rescore_batch(session=session, batch=batch, aggregation=aggregation,
                                    selection=selection, verifier=verifier, n_params=n_params)
        except RescoreError as error:
            raise click.ClickException(str(error)) from None
        return rescore_public(session, summary).model_dump(mode="json")


def _rescore_summary(result: dict[str, Any]) -> str:
    def percent(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    how = f"{result['verifier'] or 'stored scores'}, {result['aggregation']}, " \
          f"{result['selection']}"
    return (f"rescored {result['jobs']} solved problems ({how}): accuracy at the full budget "
            f"{percent(result['accuracy_before'])} -> {percent(result['accuracy'])} "
            f"of {result['graded']} graded")
