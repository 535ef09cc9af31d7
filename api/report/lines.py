"""Which batches draw one line of a report: those whose search differs only in budget and
seed (and the same rescore, if any), named by what sets them apart."""

from collections.abc import Iterable, Mapping
from typing import Any

from ttcq.db.models import Rescore

SAMPLING = ("majority", "best_of_n", "weighted_best_of_n")
TREE = ("beam_search", "dvts", "lookahead")
# The budget is the x axis and the seed is noise: batches that differ only there are
# replicates of one configuration (self-refine's budget is its number of rounds, mcts's
# its simulations). Sample confidences are stored beside samples they do not change.
NOT_A_SETTING = {"n", "seed", "rounds", "pf_rounds", "mcts_simulations",
                 "confidence_top_k", "confidence_window"}
IGNORED_BY = {
    "majority": {"verifier", "aggregation", "beam_width", "lookahead", "max_step_tokens",
                 "max_depth"},
    "best_of_n": {"beam_width", "lookahead", "max_step_tokens", "max_depth"},
    "self_refine": {"beam_width", "lookahead", "max_depth"},
}
IGNORED_BY["weighted_best_of_n"] = IGNORED_BY["best_of_n"]
# Fields only these strategies read: elsewhere they are defaults (or, in batches stored
# before the field existed, absent), and a line must not split on them.
READ_ONLY_BY = {
    "pf_temperature": {"particle_filtering"}, "rebase_temperature": {"rebase"},
    "c_puct": {"mcts"}, "mcts_value": {"mcts"}, "rollouts": {"math_shepherd", "omega"},
    "early_stop": set(SAMPLING), "early_stop_round": set(SAMPLING),
    "early_stop_min": set(SAMPLING),
    **{field: {"deepconf"} for field in ("deepconf_mode", "deepconf_keep", "deepconf_window",
                                         "deepconf_warmup", "deepconf_top_k", "chunk_tokens")},
}
# Fields every strategy reads, added after batches were stored: at their default they are
# what such a batch did, so they split no line.
LATER_DEFAULTS: dict[str, Any] = {"think_open": "<think>", "think_close": "</think>",
                                  "think_budget": None, "think_min": None, "think_wait": "Wait"}
DEFAULT_SELECTION = {"majority": "majority", "weighted_best_of_n": "weighted"}

Key = tuple[tuple[str, Any], ...]


def settings(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The fields of a batch's config that make its curve what it is."""
    strategy = config["strategy"]
    ignored = NOT_A_SETTING | IGNORED_BY.get(strategy, set())
    ignored |= {field for field, readers in READ_ONLY_BY.items() if strategy not in readers}
    ignored |= {f for f, default in LATER_DEFAULTS.items() if config.get(f, default) == default}
    if config.get("early_stop") is None:
        ignored |= {"early_stop", "early_stop_round", "early_stop_min"}
    if strategy == "self_refine" and config.get("verifier") == "none":
        ignored |= {"aggregation"}
    chosen = {k: v for k, v in config.items() if k not in ignored}
    if model:
        chosen["model"] = model
    return chosen


def rescore_settings(rescore: Rescore) -> dict[str, Any]:
    return {"rescore_verifier": rescore.verifier, "rescore_aggregation": rescore.aggregation,
            "rescore_selection": rescore.selection}


def key_of(chosen: Mapping[str, Any]) -> Key:
    return tuple(sorted((k, repr(v)) for k, v in chosen.items()))


def short_name(chosen: Mapping[str, Any]) -> str:
    """`strategy M=.. k=.. · verifier/aggregation [selection]`, and how it was rescored."""
    strategy = chosen["strategy"]
    parts = [strategy]
    if strategy in TREE:
        parts.append(f"M={chosen['beam_width']}")
        if chosen.get("lookahead"):
            parts.append(f"k={chosen['lookahead']}")
    name = " ".join(parts)
    if "verifier" in chosen and chosen["verifier"] != "none":
        name += f" · {chosen['verifier']}/{chosen.get('aggregation', '')}".rstrip("/")
    selection = chosen.get("selection")
    if selection and selection != DEFAULT_SELECTION.get(strategy, "naive"):
        name += f" · {selection}"
    if "rescore_selection" in chosen:
        judge = chosen["rescore_verifier"] or "same scores"
        name += (f" → rescored ({judge}/{chosen['rescore_aggregation']}, "
                 f"{chosen['rescore_selection']})")
    return name


def names(lines: Iterable[Mapping[str, Any]]) -> list[str]:
    """A short name per line; lines that would share one get the settings that differ."""
    lines = list(lines)
    short = [short_name(chosen) for chosen in lines]
    out = []
    for i, chosen in enumerate(lines):
        twins = [other for j, other in enumerate(lines) if j != i and short[j] == short[i]]
        differing = sorted(
            k for k in chosen if any(other.get(k) != chosen[k] for other in twins)
        )
        extra = ", ".join(f"{k}={_short(chosen[k])}" for k in differing)
        out.append(f"{short[i]} ({extra})" if extra else short[i])
    return out


def _short(value: Any, width: int = 24) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
