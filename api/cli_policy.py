"""`ttcq policy fit`: a compute-optimal policy from stored runs with gold answers, fitted
by the API (the caller's own batches) or, with --db URL, straight from a database (the
one `ttcq run` writes)."""

from pathlib import Path
from typing import Any

import click

from ttcq.api.cli_options import api_client, client_options
from ttcq.api.cli_reports import DB_HELP, _database, _ids
from ttcq.worker.search.policy import Policy, dump_policy


@click.group("policy")
def policy_group() -> None:
    """Compute-optimal policies (for --strategy compute_optimal --policy FILE)."""


@policy_group.command("fit")
@click.argument("batch_ids", nargs=-1, required=True, metavar="BATCH...")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="the policy YAML to write")
@click.option("--db", "db_url", default=None, help=DB_HELP)
@click.option("--probe", type=click.IntRange(1, 64), default=4, show_default=True,
              help="k: samples of the probe (with auto, the most tried); read from a "
                   "sampling batch of n >= k")
@click.option("--difficulty",
              type=click.Choice(["auto", "agreement", "verifier", "confidence", "none"]),
              default="auto", show_default=True,
              help="the probe's signal: answer agreement, verifier scores (read from a "
                   "scored best-of-N batch), token confidence (read from a sampling batch "
                   "run with confidence_top_k), none (one strategy for all), or auto: the "
                   "best of these and of smaller probes by cross-validation")
@click.option("--bins", type=click.IntRange(1, 32), default=4, show_default=True,
              help="difficulty bins (quantiles of the probe's confidence)")
@click.option("--tokens", type=click.FloatRange(min=1.0), default=None,
              help="mean tokens per problem to fit for (default: the most accurate per bin)")
@client_options
def fit_command(batch_ids: tuple[str, ...], output: Path, db_url: str | None, probe: int,
                difficulty: Any, bins: int, tokens: float | None, api_url: str | None,
                token: str | None) -> None:
    """Fit a policy from BATCH... (one dataset, with gold answers, several strategies)."""
    ids = _ids(batch_ids)
    if db_url:
        policy = _fit_locally(db_url, ids, probe=probe, bins=bins, tokens=tokens,
                              difficulty=difficulty)
    else:
        body = {"batch_ids": [str(i) for i in ids], "tokens": tokens, "probe": probe,
                "bins": bins, "difficulty": difficulty}
        with api_client(api_url, token) as client:
            policy = Policy.model_validate(client.fit_policy(body))
    output.write_text(dump_policy(policy), encoding="utf-8")
    signal = "no probe" if policy.probe == 0 else f"{policy.difficulty} of {policy.probe}"
    click.echo(f"probe: {signal}")
    for i, b in enumerate(policy.bins, start=1):
        click.echo(f"bin {i}: {policy.difficulty} >= {b.min_confidence:.2f} -> {b.strategy} "
                   f"n={b.n} {b.config or ''}".rstrip())
    click.echo(f"{policy.description}; wrote {output}", err=True)


def _fit_locally(url: str, ids: list[Any], **options: Any) -> Policy:
    from ttcq.db.policy_data import batch_records
    from ttcq.worker.search.policy_fit import FitError, fit_policy
    from ttcq.worker.search.policy_runs import stored

    with _database(url) as session:
        try:
            batches = [stored(b) for b in batch_records(session=session, batch_ids=ids,
                                                         samples=options["probe"])]
        except LookupError as error:
            raise click.BadParameter(str(error), param_hint="BATCH") from None
    try:
        return fit_policy(batches, probe=options["probe"], bins=options["bins"],
                          target_tokens=options["tokens"], difficulty=options["difficulty"])
    except FitError as error:
        raise click.ClickException(str(error)) from None
