"""JSON over HTTP to an inference server, with the retry policy every served engine shares:
connection failures, timeouts, 429 and 5xx are retried with backoff and then surface as
TransientEngineError (the job goes back to the queue); any other error status is an
EngineError carrying the server's own message."""

import time
from typing import Any

import httpx

from ttcq.worker.engines.base import EngineError, TransientEngineError

RETRY_STATUS = {429, 500, 502, 503, 504}
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)  # then give up: the Celery task backs off longer


def server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (FastAPI's detail, OpenAI's error.message)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        for key in ("detail", "message", "error"):
            if key in body:
                return str(body[key])
    return str(body)[:500]


class ServerClient:
    """One server's base URL, a pooled connection (safe to share between threads) and the
    retry policy. `name` prefixes every error so a user knows which server said it."""

    def __init__(self, url: str, *, name: str, timeout: float = 600.0, api_key: str = "",
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.name, self.url = name, url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str) -> Any:
        return self._call("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        for attempt, pause in enumerate((*BACKOFF_SECONDS, None)):
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TimeoutException as error:
                # A request that ran out its whole timeout is not retried here: the server
                # is alive but stuck or overloaded, and the task's backoff is longer.
                raise TransientEngineError(f"{self.name} {path}: timed out ({error})") from None
            except httpx.TransportError as error:
                if pause is None:
                    raise TransientEngineError(
                        f"{self.name} {path}: unreachable after {attempt + 1} tries ({error})"
                    ) from None
                time.sleep(pause)
                continue
            if response.status_code in RETRY_STATUS and pause is not None:
                time.sleep(pause)
                continue
            return self._result(path, response)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _result(self, path: str, response: httpx.Response) -> Any:
        if response.status_code in RETRY_STATUS:
            raise TransientEngineError(
                f"{self.name} {path}: HTTP {response.status_code}: {server_message(response)}"
            )
        if response.status_code >= 400:
            raise EngineError(
                f"{self.name} {path}: HTTP {response.status_code}: {server_message(response)}"
            )
        try:
            return response.json()
        except ValueError:
            raise EngineError(f"{self.name} {path}: not JSON: {response.text[:200]}") from None
