"""`ttcq label` (step labels from rollouts, for new solutions of a dataset or a stored
batch's candidates) and `ttcq export` (a label batch's labels as training data)."""

import json
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

import click

from ttcq.api.cli_options import api_client, client_options, dataset_options, field_mapping
from ttcq.api.label_export import FORMATS
from ttcq.api.output import OutputError, check_output_path, write_lines
from ttcq.worker.search.names import LABEL_STRATEGIES

METHODS = LABEL_STRATEGIES
PARQUET_ROWS_PER_GROUP = 10_000


@click.command()
@click.argument("dataset", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from-batch", "source", default=None, metavar="BATCH",
              help="label this stored batch's finished candidates instead of new solutions")
@click.option("--method", type=click.Choice(METHODS), default="math_shepherd",
              show_default=True, help="math_shepherd: every step; omega: binary search for "
                                      "the first wrong step")
@click.option("--solutions", type=click.IntRange(1, 4096), default=4, show_default=True,
              help="solutions per problem: sampled, or the most taken from --from-batch")
@click.option("--rollouts", type=click.IntRange(1, 256), default=8, show_default=True,
              help="R: rollouts from each step prefix")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=None)
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="tokens per solution and per rollout")
@click.option("--seed", type=int, default=None)
@dataset_options
@click.option("--model", default="", help="model (worker queue) to run on")
@click.option("--priority", type=click.IntRange(0, 9), default=0)
@click.option("--name", default="")
@client_options
def label(dataset: Path | None, source: str | None, method: str, solutions: int,
          rollouts: int, temperature: float | None, max_tokens: int | None,
          seed: int | None, field_pairs: tuple[str, ...], model: str, priority: int,
          name: str, api_url: str | None, token: str | None) -> None:
    """Label solution steps by rollouts graded against the gold; prints the label batch id."""
    if (dataset is None) == (source is None):
        raise click.UsageError("give a DATASET or --from-batch BATCH (one of them)")
    sampling = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens),
                                  ("seed", seed)) if v is not None}
    with api_client(api_url, token) as client:
        if source is not None:
            batch = client.label(source, {"method": method, "rollouts": rollouts,
                                          "solutions": solutions, "config": sampling,
                                          "name": name, "priority": priority})
        else:
            assert dataset is not None
            config = {**sampling, "strategy": method, "n": solutions, "rollouts": rollouts,
                      "verifier": "none"}
            batch = client.submit_file(dataset, config=config,
                                       fields=field_mapping(field_pairs), name=name,
                                       model=model, priority=priority)
    click.echo(batch["id"])
    if batch.get("warning"):
        click.echo(f"warning: {batch['warning']}", err=True)
    click.echo(f"queued {batch['total']} problems to label; follow with: ttcq status "
               f"{batch['id']} --watch", err=True)


@click.command()
@click.argument("batch_id")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="trl", show_default=True,
              help="trl: TRL's stepwise supervision (prompt, completions, labels); "
                   "jsonl-tree: per problem, its solutions as paths of labelled steps")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=".jsonl or .parquet (trl only); default: JSON lines to stdout")
@client_options
def export(batch_id: str, fmt: str, out: Path | None, api_url: str | None,
           token: str | None) -> None:
    """Write a label batch's step labels as training data."""
    suffix = out.suffix.lower() if out is not None else ".jsonl"
    if suffix not in (".jsonl", ".parquet"):
        raise click.BadParameter("write .jsonl or .parquet", param_hint="--out")
    if suffix == ".parquet" and fmt != "trl":
        raise click.BadParameter("Parquet holds the trl format only", param_hint="--out")
    with api_client(api_url, token) as client:
        # The first line before the file: a refused export leaves no file behind.
        lines = client.label_lines(batch_id, fmt)
        first = next(lines, None)
        lines = chain([first] if first is not None else [], lines)
        try:
            if out is not None:
                check_output_path(out)
            count = (write_trl_parquet((json.loads(line) for line in lines), out)
                     if out is not None and suffix == ".parquet" else write_lines(lines, out))
        except OutputError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"wrote {count} {'solutions' if fmt == 'trl' else 'problems'}"
               + (f" to {out}" if out else ""), err=True)


def print_label_stats(stats: dict[str, Any]) -> None:
    if not stats["steps"]:
        click.echo("  no steps labelled yet")
        return
    per_label = stats["tokens_per_label"]
    click.echo(f"  labels: {stats['steps']} steps of {stats['solutions']} solutions, "
               f"{stats['share_positive']:.1%} good; {stats['rollouts']} rollouts, "
               f"{per_label:,.0f} tokens computed per label")
    where = "  ".join(f"{step}:{count}" for step, count in stats["first_wrong_step"].items())
    click.echo(f"  first wrong step (index:solutions): {where or 'none'}")


def _trl_schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("prompt", pa.string()), ("completions", pa.list_(pa.string())),
        ("labels", pa.list_(pa.bool_())), ("soft_labels", pa.list_(pa.float64())),
        ("job_id", pa.string()), ("line", pa.int64()), ("source_job_id", pa.string()),
        ("candidate", pa.int64()),
        ("correct", pa.bool_()), ("method", pa.string()),
    ])


def write_trl_parquet(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """TRL rows as Parquet with list columns, a row group at a time."""
    import pyarrow.parquet as pq

    schema, count = _trl_schema(), 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in _chunks(rows):
            writer.write_batch(_batch(chunk, schema))
            count += len(chunk)
    return count


def _chunks(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, PARQUET_ROWS_PER_GROUP)):
        yield chunk


def _batch(chunk: list[dict[str, Any]], schema: Any) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_pylist(chunk, schema=schema)
