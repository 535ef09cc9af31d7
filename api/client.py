"""A small HTTP client of the API, used by the CLI (and usable from notebooks)."""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx


class ApiError(Exception):
    """An error answer from the API, with the line/field errors of a rejected dataset."""

    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []

    @classmethod
    def of(cls, response: httpx.Response) -> "ApiError":
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        if isinstance(detail, dict):
            return cls(response.status_code, str(detail.get("message")), detail.get("errors"))
        if isinstance(detail, list):  # FastAPI's request validation errors
            detail = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail)
        return cls(response.status_code, str(detail))


class Client:
    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0):
        self.base_url = base_url
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {error}") from None
        if response.is_error:
            raise ApiError.of(response)
        return response.json()

    def submit_file(
        self, path: Path, *, config: Mapping[str, Any], fields: Mapping[str, str],
        name: str = "", model: str = "", priority: int = 0,
    ) -> dict[str, Any]:
        form = {
            "config": json.dumps(dict(config)), "name": name, "model": model,
            "priority": str(priority), "field": [f"{k}={v}" for k, v in fields.items()],
        }
        with path.open("rb") as handle:
            files = {"file": (path.name, handle)}
            result: dict[str, Any] = self._request("POST", "/v1/batches/upload",
                                                   data=form, files=files)
        return result

    def batch(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/batches/{batch_id}")
        return result

    def cancel(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/batches/{batch_id}/cancel")
        return result

    def requeue(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/batches/{batch_id}/requeue")
        return result

    def retry(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/batches/{batch_id}/retry")
        return result

    def batches(self, limit: int = 50) -> list[dict[str, Any]]:
        """The caller's batches, newest first."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/batches",
                                                     params={"limit": limit})
        return result

    def report(self, batch_ids: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/v1/report",
                                               params={"batch_id": batch_ids})
        return result

    def fit_policy(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/v1/policies/fit", json=dict(body))
        return result

    def rescore(self, batch_id: str, *, aggregation: str | None,
                selection: str | None) -> dict[str, Any]:
        body = {"aggregation": aggregation, "selection": selection}
        result: dict[str, Any] = self._request("POST", f"/v1/batches/{batch_id}/rescore",
                                               json=body)
        return result

    def results(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """The batch's result records, streamed (a large batch is never held in memory)."""
        for line in self.result_lines(batch_id):
            yield json.loads(line)

    def label(self, batch_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"/v1/batches/{batch_id}/label",
                                               json=dict(body))
        return result

    def label_stats(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/batches/{batch_id}/labels/stats")
        return result

    def label_lines(self, batch_id: str, fmt: str) -> Iterator[str]:
        """A label batch's labels as training data, one JSON object per line."""
        return self._lines(f"/v1/batches/{batch_id}/labels", {"format": fmt})

    def result_lines(self, batch_id: str) -> Iterator[str]:
        """The batch's results as the API sends them: one JSON object per line."""
        return self._lines(f"/v1/batches/{batch_id}/results")

    def _lines(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[str]:
        try:
            with self.http.stream("GET", path, params=params) as response:
                if response.is_error:
                    response.read()
                    raise ApiError.of(response)
                for line in response.iter_lines():
                    if line:
                        yield line
        except httpx.TransportError as error:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {error}") from None
