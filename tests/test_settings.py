"""The settings object: API tokens as documented, unsafe values refused."""

import pytest
from pydantic import ValidationError

from ttcq.settings import DEV_TOKEN, Settings


def test_api_tokens_read_as_comma_separated_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTCQ_API_TOKENS", "tok:alice, t2:bob")
    assert Settings().token_owners() == {"tok": "alice", "t2": "bob"}


def test_api_tokens_read_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTCQ_API_TOKENS", '["tok:alice"]')
    assert Settings().token_owners() == {"tok": "alice"}


def test_a_token_without_owner_is_refused() -> None:
    with pytest.raises(ValidationError, match="not 'token:owner'"):
        Settings(api_tokens=["tokalice"])


def test_production_refuses_the_development_token() -> None:
    with pytest.raises(ValidationError, match="refused in production"):
        Settings(environment="production", api_tokens=[f"{DEV_TOKEN}:dev"])


def test_visibility_timeout_must_exceed_the_time_limit() -> None:
    with pytest.raises(ValidationError, match="visibility_timeout"):
        Settings(task_time_limit=100, visibility_timeout=50)
