"""Options shared by `ttcq submit` and `ttcq run`: search flags over a recipe, field mapping."""

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, get_args

import click
import yaml

from ttcq.api.client import ApiError, Client
from ttcq.api.datasets import parse_fields
from ttcq.settings import get_settings
from ttcq.worker.search.config import (
    Aggregation,
    ConfigError,
    Selection,
    VerifierName,
    load_recipe,
)
from ttcq.worker.search.names import StrategyName
from ttcq.worker.search.policy import (
    DEFAULT_POLICY,
    PolicyError,
    budget_for_tokens,
    load_policy,
    parse_policy,
)

F = TypeVar("F", bound=Callable[..., Any])

# Each flag maps to the SearchConfig field of the same name; unset flags keep the recipe's
# value, and fields neither sets keep SearchConfig's defaults.
SEARCH_FLAGS: list[tuple[str, Any, str]] = [
    ("--strategy", click.Choice(get_args(StrategyName)), "search strategy"),
    ("--n", click.IntRange(min=1), "budget: samples, beams or leaves"),
    ("--verifier", click.Choice(get_args(VerifierName)), "step verifier"),
    ("--beam-width", click.IntRange(min=1), "M: expansions per kept beam"),
    ("--lookahead", click.IntRange(min=0), "k greedy steps before scoring a step"),
    ("--rounds", click.IntRange(min=1), "self_refine revisions"),
    ("--pf-temperature", click.FloatRange(min=0.0, min_open=True),
     "particle_filtering: resample by softmax(score / T)"),
    ("--pf-rounds", click.IntRange(min=1), "particle_filtering: Particle Gibbs rounds"),
    ("--rebase-temperature", click.FloatRange(min=0.0, min_open=True),
     "rebase: split each depth's budget by softmax(score / T)"),
    ("--mcts-simulations", click.IntRange(min=1), "mcts: select-expand-evaluate-backup rounds"),
    ("--c-puct", click.FloatRange(min=0.0), "mcts: exploration weight (0: greedy on Q)"),
    ("--mcts-value", click.Choice(["verifier", "rollout"]),
     "mcts: a new step's value: its verifier score, or a greedy rollout's"),
    ("--deepconf-mode", click.Choice(["offline", "online"]),
     "deepconf: filter finished traces, or stop low-confidence ones early"),
    ("--deepconf-keep", click.FloatRange(min=0.0, max=100.0, min_open=True),
     "deepconf: η, percent of traces kept (offline) / threshold percentile 100-η (online)"),
    ("--deepconf-window", click.IntRange(min=1), "deepconf: tokens per group confidence"),
    ("--deepconf-warmup", click.IntRange(min=1), "deepconf online: traces that set the threshold"),
    ("--early-stop", click.FloatRange(min=0.0, max=1.0, min_open=True),
     "sampling: stop once the leading answer holds this share of the samples"),
    ("--early-stop-round", click.IntRange(min=1), "with --early-stop: samples per round"),
    ("--early-stop-min", click.IntRange(min=1), "with --early-stop: samples before a stop"),
    ("--think-budget", click.IntRange(min=1),
     "sampling: close a thought at T tokens and ask for the answer (s1 budget forcing)"),
    ("--think-min", click.IntRange(min=1),
     "sampling: a thought closed before M tokens goes on after think_wait (\"Wait\")"),
    ("--probe-every", click.IntRange(min=1),
     "sampling, deepconf: ask for the answer every K thinking tokens (Dynasor probing)"),
    ("--probe-agree", click.IntRange(min=2), "with --probe-every: agreeing answers that stop"),
    ("--aggregation", click.Choice(get_args(Aggregation)), "step-score aggregation"),
    ("--selection", click.Choice(get_args(Selection)), "final answer selection"),
    ("--max-tokens", click.IntRange(min=1), "tokens per candidate, over all steps"),
    ("--temperature", click.FloatRange(min=0.0), "sampling temperature"),
    ("--seed", int, "base seed; each branch derives its own"),
    ("--batch-tokens", click.IntRange(min=1),
     "compute_optimal: tokens for the whole batch, spread by the policy (in expectation)"),
]
SEARCH_KEYS = [flag[2:].replace("-", "_") for flag, _, _ in SEARCH_FLAGS]


def search_options(command: F) -> F:
    """Add the search flags and --config RECIPE to a command."""
    for flag, kind, help_text in reversed(SEARCH_FLAGS):
        command = click.option(flag, type=kind, default=None, help=help_text)(command)
    command = click.option(
        "--template-kwarg", "template_kwargs", multiple=True, metavar="KEY=VALUE",
        help="a chat-template switch, e.g. enable_thinking=false (repeatable)",
    )(command)
    command = click.option(
        "--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="compute_optimal policy YAML (from `ttcq policy fit`); stored in the batch config",
    )(command)
    return click.option(
        "--config", "recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="YAML recipe of SearchConfig fields; flags override it",
    )(command)


def dataset_options(command: F) -> F:
    return click.option(
        "--field", "field_pairs", multiple=True, metavar="FIELD=COLUMN",
        help="map a column to problem, gold or custom_id (repeatable)",
    )(command)


def config_from(recipe: Path | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's fields overridden by the flags that were given."""
    try:
        config = load_recipe(recipe) if recipe else {}
    except (ConfigError, OSError) as error:
        raise click.BadParameter(str(error), param_hint="--config") from None
    config.update({k: flags[k] for k in SEARCH_KEYS if flags.get(k) is not None})
    if flags.get("template_kwargs"):
        config["chat_template_kwargs"] = {
            **config.get("chat_template_kwargs", {}), **template_kwargs(flags["template_kwargs"])}
    if flags.get("policy_file") is not None:
        try:
            # The file's content, not its path, goes into the config: a job reruns alike.
            config["policy"] = load_policy(flags["policy_file"])
        except (PolicyError, OSError) as error:
            raise click.BadParameter(str(error), param_hint="--policy") from None
    return config


def template_kwargs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs, each value read as YAML reads a scalar (false, 3, 0.5, text)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        parsed = yaml.safe_load(value) if sep else None
        if not key or not sep or not isinstance(parsed, bool | int | float | str):
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE with a scalar value",
                                     param_hint="--template-kwarg")
        out[key] = parsed
    return out


def with_batch_tokens(config: dict[str, Any], problems: int) -> dict[str, Any]:
    """The config with n set from batch_tokens over this many problems, when given."""
    if config.get("batch_tokens") is None:
        return config
    try:
        policy = parse_policy(config.get("policy") or DEFAULT_POLICY.model_dump())
        n = budget_for_tokens(policy, config["batch_tokens"], problems)
    except PolicyError as error:
        raise click.BadParameter(str(error), param_hint="--batch-tokens") from None
    return {**config, "n": n}


def field_mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    try:
        return parse_fields(pairs)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--field") from None


def client_options(command: F) -> F:
    command = click.option("--token", default=None, help="API token [TTCQ_API_TOKEN]")(command)
    return click.option("--api-url", default=None, help="API base URL [TTCQ_API_URL]")(command)


@contextmanager
def api_client(api_url: str | None, token: str | None) -> Iterator[Client]:
    """A client of the API; its errors become CLI errors with the line/field list."""
    settings = get_settings()
    try:
        with Client(api_url or settings.api_url, token or settings.api_token) as client:
            yield client
    except ApiError as error:
        raise click.ClickException(error_report(error.message, error.errors)) from None


def error_report(message: str, errors: list[dict[str, Any]]) -> str:
    """A rejected dataset's errors, one per line: `  line 3, field problem: missing`."""
    lines = [message]
    for item in errors:
        where = ", ".join(
            f"{key} {item[key]}" for key in ("line", "field") if item.get(key) is not None
        )
        lines.append(f"  {where}: {item['message']}" if where else f"  {item['message']}")
    return "\n".join(lines)
