"""`ttcq run`: the embedded mode. No Redis and no API: the dataset goes into a local
database (SQLite by default, or Postgres) and every job runs in this process through the
same path a Celery worker takes (worker.service.process_job), with the llama.cpp engine."""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.engine import make_url

from ttcq.api.cli_options import (
    config_from,
    dataset_options,
    error_report,
    field_mapping,
    search_options,
    with_batch_tokens,
)
from ttcq.api.datasets import DatasetError, Limits, detect_format, load_dataset
from ttcq.api.output import OutputError, check_output_path, write_results
from ttcq.api.progress import LiveProgress
from ttcq.db.batches import ProblemIn, create_batch
from ttcq.db.migrate import upgrade
from ttcq.db.reports import job_outcome
from ttcq.db.results import batch_results
from ttcq.db.session import get_engine, session_scope
from ttcq.settings import Settings, get_settings
from ttcq.worker.engines.base import Engine, EngineError
from ttcq.worker.search.config import ConfigError, SearchConfig, make_config
from ttcq.worker.search.names import LABEL_STRATEGIES

if TYPE_CHECKING:  # the search stack (sympy, math-verify) loads only when `run` runs
    from ttcq.worker.service import SessionFactory

DEFAULT_DB = "sqlite:///ttcq.db"
OWNER = "local"
# SmolLM2-135M makes about 100 tokens/s on two CPU cores; a GSM8K solution fits in 256
# tokens, and SearchConfig's server default (512) would double the worst case of a demo.
EMBEDDED_MAX_TOKENS = 256
TOKEN_FIELDS = ("prompt_tokens", "cached_tokens", "completion_tokens", "verifier_tokens",
                "engine_calls")


@dataclass
class Summary:
    """Totals over the result records, gathered while they are written out."""

    problems: int = 0
    graded: int = 0
    correct: int = 0
    states: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        self.problems += 1
        self.states[record["status"]] += 1
        if record["correct"] is not None:
            self.graded += 1
            self.correct += bool(record["correct"])
        cost = record["cost"] or {}
        self.totals.update({k: cost.get(k, 0) for k in TOKEN_FIELDS})
        return record


def session_factory(url: str) -> SessionFactory:
    return contextmanager(partial(session_scope, url))


def _search_config(recipe: Path | None, flags: dict[str, Any], problems: int) -> SearchConfig:
    values = with_batch_tokens(config_from(recipe, flags), problems)
    values.setdefault("max_tokens", EMBEDDED_MAX_TOKENS)
    try:
        return make_config(**values)
    except ConfigError as error:
        raise click.UsageError(f"invalid config: {error}") from None


def _check_golds(path: Path, problems: list[ProblemIn], config: SearchConfig) -> None:
    """A label batch grades rollouts against the gold: refused before any is run, as the
    API refuses it."""
    if config.strategy not in LABEL_STRATEGIES:
        return
    if missing := next((p.line for p in problems if p.gold is None), None):
        raise click.ClickException(f"{path}: line {missing}: answer: missing: step labels "
                                   "grade their rollouts against the gold answer")


def _problems(path: Path, pairs: tuple[str, ...], settings: Settings,
              limit: int | None) -> list[ProblemIn]:
    limits = Limits(settings.max_problem_chars, settings.max_batch_problems)
    try:
        problems = load_dataset(path.read_bytes(), fmt=detect_format(path.name), limits=limits,
                                fields=field_mapping(pairs))
    except DatasetError as error:
        raise click.ClickException(error_report(f"{path}: {error.summary()}",
                                                error.detail()["errors"])) from None
    return problems[:limit] if limit else problems


def load_engine(model_path: str, n_ctx: int, threads: int | None) -> Engine:
    from ttcq.worker.engines.llamacpp import LlamaCppEngine, describe_build  # needed only here

    try:
        engine = LlamaCppEngine(model_path, n_ctx=n_ctx, n_threads=threads)
    except EngineError as error:
        raise click.ClickException(str(error)) from None
    click.echo(describe_build(threads), err=True)
    return engine


def _solve(sessions: SessionFactory, engine: Engine, job_id: uuid.UUID,
           settings: Settings) -> str:
    from ttcq.worker.service import Requeued, process_job

    # A job handed back runs again at once (its strikes end a job that keeps failing).
    while True:
        try:
            return process_job(sessions=sessions, job_id=job_id, engine=engine,
                               worker_name="embedded", lease_seconds=settings.lease_seconds,
                               max_attempts=settings.max_attempts)
        except Requeued:
            continue


def _solve_all(sessions: SessionFactory, engine: Engine, job_ids: list[uuid.UUID],
               settings: Settings) -> None:
    """Solve the jobs in order, showing progress after each (one small query)."""
    progress = LiveProgress(len(job_ids), sys.stderr)
    progress.show()
    for job_id in job_ids:
        outcome = _solve(sessions, engine, job_id, settings)
        with sessions() as session:
            correct, tokens = job_outcome(session=session, job_id=job_id)
        progress.add(outcome, correct, tokens)


@click.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@search_options
@dataset_options
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="solve only the first K problems")
@click.option("--db", "db_url", default=DEFAULT_DB, show_default=True,
              help="SQLite or Postgres URL (migrated first)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="results file: .jsonl, .csv or .parquet")
@click.option("--model-path", default=None,
              help="a GGUF model [TTCQ_MODEL_PATH; default SmolLM2-135M-Instruct]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for the model [TTCQ_N_THREADS; default: one per core "
                   "that other processes leave free, re-read as the search runs]")
@click.option("--name", default="", help="a name for the batch")
def run_command(file: Path, recipe: Path | None, field_pairs: tuple[str, ...],
                limit: int | None, db_url: str, out: Path | None, model_path: str | None,
                threads: int | None, name: str, **flags: Any) -> None:
    """Solve a dataset in this process (no Redis, no API) and print a summary.

    Candidates get at most 256 tokens here unless --max-tokens or the recipe say otherwise."""
    settings = get_settings()
    problems = _problems(file, field_pairs, settings, limit)
    config = _search_config(recipe, flags, len(problems))
    _check_golds(file, problems, config)
    if out is not None:
        _check_out(out)  # before the long part, not after it
    started = time.perf_counter()
    engine = load_engine(model_path or settings.model_path, settings.n_ctx,
                     threads or settings.n_threads)
    loaded = time.perf_counter()
    upgrade(db_url)
    sessions = session_factory(db_url)
    with sessions() as session:
        batch, job_ids = create_batch(session=session, owner=OWNER, name=name or file.name,
                                      config=config.model_dump(mode="json"), problems=problems)
    solving = time.perf_counter()
    _solve_all(sessions, engine, job_ids, settings)
    timing = (loaded - started, time.perf_counter() - solving)
    summary = _collect(sessions, batch.id, batch.config, out)
    get_engine(db_url).dispose()
    _print_summary(summary, timing, batch.id, db_url, out)


def _collect(sessions: SessionFactory, batch_id: uuid.UUID, config: dict[str, Any],
             out: Path | None) -> Summary:
    """Sum up the results, writing them to out on the way when asked to."""
    summary = Summary()
    with sessions() as session:
        records = batch_results(session=session, batch_id=batch_id, config=config)
        if out is None:
            for record in records:
                summary.add(record)
        else:
            write_results(map(summary.add, records), out)
    return summary


def _check_out(out: Path) -> None:
    try:
        check_output_path(out)
    except OutputError as error:
        raise click.BadParameter(str(error), param_hint="--out") from None


def _print_summary(summary: Summary, timing: tuple[float, float], batch_id: uuid.UUID,
                   db_url: str, out: Path | None) -> None:
    load_seconds, solve_seconds = timing
    t = summary.totals
    accuracy = (f"{summary.correct}/{summary.graded} ({summary.correct / summary.graded:.1%})"
                if summary.graded else "no gold answers")
    cached_share = t["cached_tokens"] / t["prompt_tokens"] if t["prompt_tokens"] else 0.0
    rows = [
        ("problems", str(summary.problems)),
        ("jobs", ", ".join(f"{k} {v}" for k, v in sorted(summary.states.items()))),
        ("solved", accuracy),
        ("prompt tokens", f"{t['prompt_tokens']} ({t['cached_tokens']} cached, "
                          f"{cached_share:.0%})"),
        ("completion tokens", str(t["completion_tokens"])),
        ("verifier tokens", str(t["verifier_tokens"])),
        ("engine calls", str(t["engine_calls"])),
        ("wall time", f"{solve_seconds:.1f} s (+ {load_seconds:.1f} s loading the model)"),
        ("time per problem", f"{solve_seconds / max(summary.problems, 1):.2f} s"),
        ("results", str(out) if out else "not written (use --out)"),
        ("database", f"{make_url(db_url).render_as_string(hide_password=True)} "
                     f"(batch {batch_id})"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label:<{width}}  {value}")
