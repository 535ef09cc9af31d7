"""The OpenAPI spec is the contract: the search config a request carries is published with
every field, enum and bound, every reference in the spec resolves, and the API's
validation is the spec's: at each published bound a config is taken, one step past it
refused with a 400 that names the field."""

from collections.abc import Iterator
from typing import Any, get_args

import httpx
import pytest

from tests.utils.api_factories import api_settings, auth, running_api
from ttcq.api.app import create_app
from ttcq.worker.search.names import StrategyName

PROBLEMS = [{"problem": "What is 2 + 3?", "answer": "5"}]


def _spec() -> dict[str, Any]:
    return create_app().openapi()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _config_schema(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/v1/batches"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/BatchCreate"}
    return schemas["BatchCreate"]["properties"]["config"]  # type: ignore[no-any-return]


def test_the_search_config_is_published_with_its_enums_and_bounds() -> None:
    config = _config_schema(_spec())
    fields = config["properties"]
    assert fields["strategy"]["enum"] == list(get_args(StrategyName))
    assert fields["verifier"]["enum"] == [
        "self_judge", "checker", "prm", "orm", "classifier_prm", "none"]
    assert (fields["n"]["minimum"], fields["n"]["maximum"]) == (1, 4096)
    assert config["additionalProperties"] is False  # an unknown field is refused


def test_every_reference_in_the_spec_resolves() -> None:
    spec = _spec()
    names = set(spec["components"]["schemas"])
    assert {ref.rsplit("/", 1)[1] for ref in _refs(spec)} <= names


def _bounded(config: dict[str, Any]) -> list[tuple[str, int]]:
    """Integer fields with a published maximum: (name, maximum)."""
    return [(name, field["maximum"]) for name, field in config["properties"].items()
            if field.get("type") == "integer" and "maximum" in field]


@pytest.fixture
def client(db_url: str, redis_url: str) -> Iterator[httpx.Client]:
    with running_api(api_settings(db_url, redis_url)) as (_, url), \
            httpx.Client(base_url=url, headers=auth()) as client:
        yield client


def test_the_api_takes_each_published_bound_and_refuses_one_past_it(
    client: httpx.Client,
) -> None:
    bounded = _bounded(_config_schema(_spec()))
    assert {name for name, _ in bounded} >= {"n", "rounds", "lookahead", "seed", "top_k"}
    for name, maximum in bounded:
        base = {"strategy": "lookahead", "lookahead": 1} if name == "lookahead" else {}
        taken = client.post("/v1/batches", json={"config": {**base, name: maximum},
                                                  "problems": PROBLEMS})
        assert taken.status_code == 201, (name, taken.text)
        refused = client.post("/v1/batches", json={"config": {**base, name: maximum + 1},
                                                    "problems": PROBLEMS})
        assert refused.status_code == 400, (name, refused.text)
        assert name in refused.json()["detail"]["message"]
