"""`ttcq`: a client of the API (submit, status, results, cancel), a launcher for the API,
the worker and migrations, and `ttcq run`, the embedded mode (see api.embedded)."""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from ttcq.api.cli_labels import METHODS, export, label, print_label_stats
from ttcq.api.cli_options import (
    api_client,
    client_options,
    config_from,
    dataset_options,
    field_mapping,
    search_options,
    with_batch_tokens,
)
from ttcq.api.cli_policy import policy_group
from ttcq.api.cli_reports import list_command, report_command, rescore_command
from ttcq.api.client import Client
from ttcq.api.embedded import run_command
from ttcq.api.output import OutputError, write_lines, write_results
from ttcq.settings import get_settings
from ttcq.worker.celery_app import DEFAULT_QUEUE

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ttcq")
def main() -> None:
    """ttcq: make small models solve math problems by spending compute at inference."""
    try:
        get_settings()
    except ValidationError as error:
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        raise click.ClickException(f"invalid TTCQ_* settings: {reasons}") from None


main.add_command(run_command)
main.add_command(list_command)
main.add_command(report_command)
main.add_command(rescore_command)
main.add_command(policy_group)
main.add_command(label)
main.add_command(export)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@search_options
@dataset_options
@click.option("--model", default="", help="model (worker queue) to run on")
@click.option("--priority", type=click.IntRange(0, 9), default=0, help="higher runs first")
@click.option("--name", default="", help="a name for the batch")
@client_options
def submit(file: Path, recipe: Path | None, field_pairs: tuple[str, ...], model: str,
           priority: int, name: str, api_url: str | None, token: str | None,
           **flags: Any) -> None:
    """Submit a dataset (JSONL, CSV or Parquet); prints the batch id."""
    config = config_from(recipe, flags)
    fields = field_mapping(field_pairs)
    if config.get("batch_tokens") is not None:
        config = with_batch_tokens(config, _count_problems(file, fields))
    with api_client(api_url, token) as client:
        batch = client.submit_file(file, config=config, fields=fields, name=name,
                                   model=model, priority=priority)
    click.echo(batch["id"])
    if batch.get("warning"):
        click.echo(f"warning: {batch['warning']}", err=True)
    click.echo(f"queued {batch['total']} problems; follow with: ttcq status {batch['id']} "
               "--watch", err=True)


def _count_problems(file: Path, fields: dict[str, str]) -> int:
    """Problems in the file, read here: --batch-tokens spreads its tokens over them."""
    from ttcq.api.datasets import DatasetError, Limits, detect_format, load_dataset

    try:
        rows = load_dataset(file.read_bytes(), fmt=detect_format(file.name),
                            limits=Limits(get_settings().max_problem_chars, 10**7),
                            fields=fields)
    except (DatasetError, ValueError) as error:
        raise click.BadParameter(str(error), param_hint="FILE") from None
    return len(rows)


def _print_batch(batch: dict[str, Any]) -> None:
    accuracy = batch["accuracy"]
    graded = (f"{batch['correct']}/{batch['graded']} correct ({accuracy:.1%})"
              if accuracy is not None else "none graded yet")
    click.echo(f"batch {batch['id']}  {batch['strategy']}  n={batch['config'].get('n')}  "
               f"{batch['done']}/{batch['total']} done  {graded}")
    click.echo("  " + "  ".join(f"{state}={count}" for state, count in batch["counts"].items()))
    if batch.get("failures"):
        reasons = sorted(batch["failures"].items(), key=lambda item: -item[1])
        click.echo("  failed by reason: " + "  ".join(f"{r}={n}" for r, n in reasons)
                   + f"  (run them again: ttcq retry {batch['id']})")


@main.command()
@click.argument("batch_id")
@click.option("--watch", is_flag=True, help="show a live progress bar until every job is final")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="seconds between polls with --watch")
@client_options
def status(batch_id: str, watch: bool, interval: float, api_url: str | None,
           token: str | None) -> None:
    """Jobs of a batch by state, and accuracy so far."""
    with api_client(api_url, token) as client:
        batch = client.batch(batch_id)
        if watch:
            batch = _watch(client, batch, interval)
        stats = client.label_stats(batch_id) if batch["strategy"] in METHODS else None
    _print_batch(batch)
    if stats:
        print_label_stats(stats)


def _watch(client: Client, batch: dict[str, Any], interval: float) -> dict[str, Any]:
    with click.progressbar(length=batch["total"], label="jobs done", show_pos=True,
                           show_eta=True, file=sys.stderr) as bar:
        bar.update(batch["done"])
        while batch["done"] < batch["total"]:
            time.sleep(interval)
            previous, batch = batch["done"], client.batch(batch["id"])
            bar.update(batch["done"] - previous)
    return batch


@main.command()
@click.argument("batch_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="out.jsonl, out.csv or out.parquet (default: JSON lines on stdout)")
@client_options
def results(batch_id: str, output: Path | None, api_url: str | None, token: str | None) -> None:
    """Write one result per problem: answer, correctness, cost and candidates."""
    with api_client(api_url, token) as client:
        try:
            if output is None or output.suffix.lower() == ".jsonl":
                count = write_lines(client.result_lines(batch_id), output)
            else:
                count = write_results(client.results(batch_id), output)
        except OutputError as error:
            raise click.BadParameter(str(error), param_hint="--output") from None
    if output is not None:
        click.echo(f"wrote {count} results to {output}", err=True)


@main.command()
@click.argument("batch_id")
@client_options
def cancel(batch_id: str, api_url: str | None, token: str | None) -> None:
    """Cancel a batch: queued jobs at once, running ones at their next check."""
    with api_client(api_url, token) as client:
        _print_batch(client.cancel(batch_id))


@main.command()
@click.argument("batch_id")
@client_options
def requeue(batch_id: str, api_url: str | None, token: str | None) -> None:
    """Send a batch's queued jobs to the queue again (after Redis lost its messages)."""
    with api_client(api_url, token) as client:
        _print_batch(client.requeue(batch_id))


@main.command()
@click.argument("batch_id")
@client_options
def retry(batch_id: str, api_url: str | None, token: str | None) -> None:
    """Run a batch's failed jobs again, with fresh attempts (their history is kept, and a
    search that saved a checkpoint resumes from it)."""
    with api_client(api_url, token) as client:
        before = client.batch(batch_id)["counts"]["failed"]
        batch = client.retry(batch_id)
    click.echo(f"{before} failed jobs queued again", err=True)
    _print_batch(batch)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """Run the API server."""
    import uvicorn

    get_settings()  # fail here, with the reason, if the settings are invalid
    uvicorn.run("ttcq.api.app:create_app", factory=True, host=host, port=port)


@main.command()
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="jobs at once: llama.cpp processes (default 1), or searches in flight "
                   "on a served engine [TTCQ_IN_FLIGHT, default 32]")
@click.option("--queue", default=DEFAULT_QUEUE, show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--drain", is_flag=True,
              help="instead of running one: tell the running workers of this machine (or "
                   "--name) to hand their jobs back at their next step and exit")
@click.option("--name", "names", multiple=True,
              help="with --drain: a worker's name (celery@HOST), as `ttcq worker` logs it")
def worker(concurrency: int | None, queue: str, loglevel: str, drain: bool,
           names: tuple[str, ...]) -> None:
    """Run a Celery worker that solves queued jobs (SIGTERM drains it: its searches hand
    their jobs back at their next step, checkpointed, and it exits)."""
    if drain:
        from ttcq.worker.drain import drain_workers

        for line in drain_workers(list(names)):
            click.echo(line)
        return
    from ttcq.worker.main import run_worker  # imported here: it loads the task modules

    run_worker(concurrency=concurrency, queue=queue, loglevel=loglevel)


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@click.option("--url", default=None, help="database URL [TTCQ_DATABASE_URL]")
def upgrade(url: str | None) -> None:
    """Migrate the database to the newest schema (creating a Postgres database if needed)."""
    from ttcq.db.migrate import upgrade as migrate

    migrate(url or get_settings().database_url)
    click.echo("database is at the newest schema", err=True)
