"""The typed, validated search configuration; recipes are YAML overrides of it."""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ttcq.worker.search.names import (
    LABEL_STRATEGIES,
    SAMPLING_STRATEGIES,
    TREE_STRATEGIES,
    StrategyName,
)
from ttcq.worker.search.policy import DEFAULT_POLICY, Policy, PolicyBin, describe, scaled_budget
from ttcq.worker.search.types import Aggregation

VerifierName = Literal["self_judge", "checker", "prm", "orm", "classifier_prm", "none"]
Selection = Literal["naive", "weighted", "majority"]

DEFAULT_SELECTION: dict[str, Selection] = {
    "majority": "majority",
    "weighted_best_of_n": "weighted",
}
# Strategies whose judge is no verifier (labels grade rollouts against the gold; DeepConf
# reads the model's own confidence): their verifier defaults to none.
UNVERIFIED: tuple[str, ...] = (*LABEL_STRATEGIES, "deepconf")
# What ttcq itself passes to a chat template: a recipe may not set them.
RESERVED_TEMPLATE_KWARGS = ("messages", "add_generation_prompt", "bos_token", "eos_token")
# `--strategy lookahead` without `--lookahead`: one greedy step before each score, the
# cheapest lookahead (at most one extra step per candidate step) that is not beam search.
DEFAULT_LOOKAHEAD = 1
DEFAULT_SYSTEM_PROMPT = (
    "Solve the math problem step by step. Separate the steps with a blank line. "
    "Write the final answer as \\boxed{answer}."
)


class ConfigError(ValueError):
    """A search config that cannot run; the message names the field."""


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: StrategyName = "majority"
    n: int = Field(default=4, ge=1, le=4096, description="budget: samples, beams or leaves")
    beam_width: int = Field(default=4, ge=1, description="M: expansions per kept beam")
    lookahead: int = Field(default=0, ge=0, le=16, description="k greedy steps before scoring")
    rounds: int = Field(default=2, ge=1, le=16, description="self_refine revisions")
    # Scores lie in [0, 1]: at 0.2 a score ahead by 0.2 weighs e times more.
    pf_temperature: float = Field(default=0.2, gt=0.0, le=100.0,
                                  description="particle_filtering: softmax(score / T) resampling")
    pf_rounds: int = Field(default=1, ge=1, le=16,
                           description="particle_filtering: Particle Gibbs rounds of n particles")
    rebase_temperature: float = Field(default=0.2, gt=0.0, le=100.0,
                                      description="rebase: softmax(score / T) splits a depth's n")
    rollouts: int = Field(default=8, ge=1, le=256,
                          description="math_shepherd, omega: rollouts from each step prefix")
    mcts_simulations: int = Field(default=32, ge=1, le=4096,
                                  description="mcts: select-expand-evaluate-backup rounds")
    c_puct: float = Field(default=1.0, ge=0.0, le=100.0,
                          description="mcts: exploration weight of the UCT bonus")
    mcts_value: Literal["verifier", "rollout"] = Field(
        default="verifier",
        description="mcts: a new node's value is its verifier score, or the verifier's "
                    "score of one greedy rollout to an answer from it")
    # Reasoning models: a thought between these tags, then the answer (graded alone).
    think_open: str = Field(default="<think>", min_length=1)
    think_close: str = Field(default="</think>", min_length=1)
    think_budget: int | None = Field(
        default=None, ge=1, description="s1 budget forcing: close a thought at T tokens and "
                                        "ask for the answer")
    think_min: int | None = Field(
        default=None, ge=1, description="extend a thought that ends before M tokens with "
                                        "think_wait")
    think_wait: str = Field(default="Wait", min_length=1)
    # Passed to the model's chat template as SGLang and vLLM pass chat_template_kwargs.
    chat_template_kwargs: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="the chat template's own switches, e.g. Qwen3's "
                                          "{enable_thinking: false}")
    probe_every: int | None = Field(
        default=None, ge=1, description="answer probing: thinking tokens between probes for "
                                        "the answer so far (Dynasor)")
    probe_agree: int = Field(default=3, ge=2, le=16,
                             description="answer probing: agreeing answers that end a thought")
    deepconf_mode: Literal["offline", "online"] = Field(
        default="online", description="deepconf: filter finished traces (offline) or stop "
                                      "low-confidence ones early (online)")
    deepconf_keep: float = Field(
        default=10.0, gt=0.0, le=100.0,
        description="deepconf: η, percent of traces kept (offline), or the percentile of the "
                    "warm-up's confidences a trace must stay above (online: 100 - η)")
    deepconf_window: int = Field(default=2048, ge=1,
                                 description="deepconf: tokens per group confidence")
    deepconf_warmup: int = Field(default=16, ge=1,
                                 description="deepconf online: traces that set the threshold")
    deepconf_top_k: int = Field(default=20, ge=1, le=20,
                                description="deepconf: logprobs per token in its confidence")
    chunk_tokens: int = Field(default=256, ge=1,
                              description="deepconf: most tokens a trace grows by in one call "
                                          "(a chunk also ends at a step delimiter)")
    # A sampling batch drawn with top-k logprobs stores each sample's token confidence, so
    # `ttcq policy fit` can read what compute_optimal's confidence probe would have seen.
    confidence_top_k: int = Field(
        default=0, ge=0, le=20,
        description="sampling: logprobs per token for each sample's confidence (its lowest "
                    "group confidence, stored on its candidate); 0: none")
    confidence_window: int = Field(default=2048, ge=1,
                                   description="sampling: tokens per group confidence")
    early_stop: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="sampling: stop once the leading answer holds this share of the samples",
    )
    early_stop_round: int = Field(default=4, ge=1, description="sampling: samples per round")
    early_stop_min: int = Field(default=4, ge=1, description="sampling: samples before a stop")
    verifier: VerifierName = "checker"
    aggregation: Aggregation = "min"
    selection: Selection | None = None
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, le=1000)
    max_tokens: int = Field(default=512, ge=1, description="per candidate, over all steps")
    max_step_tokens: int = Field(default=256, ge=1)
    max_depth: int = Field(default=40, ge=1, description="steps per candidate")
    step_delimiter: str = Field(default="\n\n", min_length=1)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # compute_optimal's policy (worker.search.policy), stored whole so a job reruns alike.
    policy: dict[str, Any] | None = None
    # A whole batch's tokens, spread over its problems by compute_optimal's policy: the
    # n it led to is set beside it (see worker.search.policy.budget_for_tokens).
    batch_tokens: int | None = Field(default=None, ge=1)
    # Set by the worker for one job, from the batch's ledger (policy.allowance): tokens
    # per problem left when the job started; the job's n is what fits it.
    batch_allowance: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="before")
    @classmethod
    def _default_lookahead(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("strategy") == "lookahead":
            if values.get("lookahead") is None:
                return {**values, "lookahead": DEFAULT_LOOKAHEAD}
        if isinstance(values, dict) and values.get("strategy") == "compute_optimal":
            return _with_policy(values)
        if isinstance(values, dict) and values.get("strategy") in UNVERIFIED:
            return {"verifier": "none", **values}
        return values

    @model_validator(mode="after")
    def _check_shape(self) -> "SearchConfig":
        if self.strategy in TREE_STRATEGIES and self.n % self.beam_width:
            raise ValueError(
                f"n={self.n} is not divisible by beam_width={self.beam_width} "
                f"(strategy {self.strategy} keeps n/beam_width beams)"
            )
        if self.strategy == "lookahead" and self.lookahead < 1:
            raise ValueError("strategy lookahead needs lookahead >= 1")
        if self.strategy == "compute_optimal":
            self._check_policy_verifiers()
        elif (self.policy, self.batch_tokens, self.batch_allowance) != (None, None, None):
            raise ValueError("policy and batch_tokens are only used by strategy compute_optimal")
        elif self.strategy in LABEL_STRATEGIES and self.verifier != "none":
            raise ValueError(f"strategy {self.strategy} grades its rollouts against the gold "
                             "and uses no verifier (set verifier none)")
        elif self.strategy not in ("majority", "self_refine", *UNVERIFIED) and (
                self.verifier == "none"):
            raise ValueError(f"strategy {self.strategy} needs a verifier")
        if self.strategy == "particle_filtering" and self.pf_rounds > 1 and self.n < 2:
            raise ValueError("pf_rounds: Particle Gibbs rounds need n >= 2 (one particle is "
                             "the reference, the others are new)")
        self._check_early_stop()
        self._check_confidence()
        self._check_thinking()
        self._check_template_kwargs()
        return self

    def _check_template_kwargs(self) -> None:
        for key in self.chat_template_kwargs:
            if key in RESERVED_TEMPLATE_KWARGS:
                raise ValueError(f"chat_template_kwargs.{key}: set by ttcq itself")

    def _check_thinking(self) -> None:
        forced = [name for name in ("think_budget", "think_min") if getattr(self, name)]
        if forced and self.strategy not in (*SAMPLING_STRATEGIES, "compute_optimal"):
            raise ValueError(f"{forced[0]}: strategy {self.strategy} does not force thoughts "
                             f"(only {', '.join(SAMPLING_STRATEGIES)} and compute_optimal)")
        probing = (*SAMPLING_STRATEGIES, "deepconf", "compute_optimal")
        if self.probe_every is not None and self.strategy not in probing:
            raise ValueError(f"probe_every: strategy {self.strategy} does not probe thoughts "
                             f"(only {', '.join(probing)})")
        thinking = [name for name in ("think_budget", "think_min", "probe_every")
                    if getattr(self, name) is not None]
        if self.confidence_top_k and thinking:
            raise ValueError(f"confidence_top_k: not with {thinking[0]} (a forced or probed "
                             "thought is written by several calls)")
        if (self.strategy == "compute_optimal" and thinking
                and self.compute_policy.difficulty == "confidence"):
            raise ValueError(f"policy.difficulty: a confidence probe is not drawn with "
                             f"{thinking[0]} (a forced or probed thought is written by "
                             "several calls)")
        if self.think_budget and self.think_min and self.think_min >= self.think_budget:
            raise ValueError(f"think_min: {self.think_min} must be below think_budget "
                             f"({self.think_budget})")

    def _check_policy_verifiers(self) -> None:
        """One job, one verifier: the probe's scores and every bin's are this job's."""
        policy = self.compute_policy
        if policy.difficulty == "verifier":
            if self.verifier == "none":
                raise ValueError("policy.difficulty: the verifier signal needs a verifier "
                                 "(set verifier)")
            if policy.verifier not in (None, self.verifier):
                raise ValueError(f"policy.verifier: its thresholds are {policy.verifier} "
                                 f"scores; this job's verifier is {self.verifier}")
        for i, policy_bin in enumerate(policy.bins):
            named = policy_bin.config.get("verifier", self.verifier)
            if named not in (self.verifier, "none") and policy_bin.strategy != "majority":
                raise ValueError(f"policy.bins.{i}: fitted with verifier {named}; this job's "
                                 f"verifier is {self.verifier} (a job has one verifier)")
            try:
                bin_config(self, policy_bin)
            except ConfigError as error:
                raise ValueError(f"policy.bins.{i}: {error}") from None

    def _check_confidence(self) -> None:
        if self.confidence_top_k and self.strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"confidence_top_k: strategy {self.strategy} stores no sample "
                             f"confidences (only {', '.join(SAMPLING_STRATEGIES)}; deepconf "
                             "has deepconf_top_k, compute_optimal its policy's top_k)")

    def _check_early_stop(self) -> None:
        if self.early_stop is None:
            return
        if self.strategy not in SAMPLING_STRATEGIES:
            raise ValueError(
                f"early_stop: strategy {self.strategy} does not stop early "
                f"(only {', '.join(SAMPLING_STRATEGIES)})"
            )
        if self.early_stop_min > self.n:
            raise ValueError(
                f"early_stop_min: {self.early_stop_min} samples before a stop exceeds n={self.n}"
            )

    @property
    def compute_policy(self) -> Policy:
        return Policy.model_validate(self.policy) if self.policy else DEFAULT_POLICY

    @property
    def final_selection(self) -> Selection:
        return self.selection or DEFAULT_SELECTION.get(self.strategy, "naive")


def _with_policy(values: dict[str, Any]) -> dict[str, Any]:
    """compute_optimal without a policy gets the default one written into its config (so
    a stored job says what it ran), and without n the policy's own budget."""
    policy = values.get("policy")
    if policy is None:
        policy = DEFAULT_POLICY.model_dump(mode="json")
    elif isinstance(policy, Policy):
        policy = policy.model_dump(mode="json")
    try:
        parsed = Policy.model_validate(policy)
    except ValidationError as error:
        raise ValueError(describe(error)) from None
    values = {**values, "policy": parsed.model_dump(mode="json")}
    values.setdefault("n", parsed.budget)
    return values


def bin_config(config: SearchConfig, policy_bin: PolicyBin) -> SearchConfig:
    """The config a bin runs: the job's own, with the bin's strategy, overrides and its
    budget scaled to the job's n (0 for a settled bin: nothing runs)."""
    base = config.model_dump(exclude={"strategy", "n", "policy", "batch_tokens",
                                      "batch_allowance"})
    values = {**base, **policy_bin.config, "strategy": policy_bin.strategy}
    width = values.get("beam_width", 4) if policy_bin.strategy in TREE_STRATEGIES else 1
    values["n"] = max(1, scaled_budget(policy_bin.n, config.compute_policy, config.n, width))
    return make_config(**values)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def make_config(**values: Any) -> SearchConfig:
    """A SearchConfig from plain values, raising ConfigError with the failing fields named."""
    try:
        return SearchConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML recipe: a mapping of SearchConfig fields overriding the defaults."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"recipe {path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping of config fields")
    return data
