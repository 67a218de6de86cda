"""A retrying JSON client for DashScope's HTTP API, bounded by a per-task deadline.

Transient failures (connection errors, timeouts, 5xx, malformed JSON) are retried
with capped exponential backoff and full jitter; 429 waits for ``Retry-After``.
Anything else (400, 401, 403, 404) is permanent. Nothing here ever puts the API
key into a message: errors carry the upstream's code and message, or our own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from workers import metrics
from workers.backends import TaskFailed

log = logging.getLogger("synthgate.worker.upstream")

TIMEOUT_CODE = "InternalError.Timeout"
UPSTREAM_CODE = "InternalError.Upstream"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying: backoff base and cap (seconds)."""

    base_seconds: float = 0.2
    max_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


def retry_after(response: httpx.Response, fallback: float) -> float:
    """Seconds from a ``Retry-After`` header (delta or HTTP date), else ``fallback``."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return fallback
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return fallback


async def sleep_until_or_fail(delay: float, deadline: float, what: str) -> None:
    """Sleep ``delay`` seconds, or fail the task if the deadline comes first."""
    if time.time() + delay >= deadline:
        raise TaskFailed(TIMEOUT_CODE, f"The upstream service did not {what} before the deadline.")
    await asyncio.sleep(delay)


class UpstreamClient:
    """Calls ``{base_url}/...`` with the service key; returns decoded JSON bodies of 200s."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, api_key: str, policy: RetryPolicy
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._policy = policy

    async def call(
        self, method: str, path: str, deadline: float, what: str, **kwargs: Any
    ) -> dict[str, Any]:
        """One logical request, retried until it answers 200 or the deadline passes."""
        attempt = 0
        while True:
            response = await self._attempt(method, path, deadline, **kwargs)
            if response is not None and response.status_code == 200:
                body = _json(response)
                if body is not None:
                    return body
                metrics.upstream_error(_operation(method), "malformed")
                log.warning("upstream %s answered malformed JSON; retrying", what)
            elif response is not None and response.status_code == 429:
                delay = retry_after(response, self._policy.backoff(attempt))
                log.info("upstream throttled %s; retrying in %.2fs", what, delay)
                await sleep_until_or_fail(delay + random.uniform(0, 0.1), deadline, what)
                attempt += 1
                continue
            elif response is not None and response.status_code < 500:
                raise _permanent(response)
            await sleep_until_or_fail(self._policy.backoff(attempt), deadline, what)
            attempt += 1

    async def _attempt(
        self, method: str, path: str, deadline: float, **kwargs: Any
    ) -> httpx.Response | None:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TaskFailed(TIMEOUT_CODE, "The upstream task did not finish before the deadline.")
        timeout = min(self._http.timeout.read or remaining, remaining)
        headers = {**self._headers, **kwargs.pop("headers", {})}
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", headers=headers, timeout=timeout, **kwargs
            )
        except httpx.TransportError as exc:  # connect errors, timeouts, dropped connections
            failure = type(exc).__name__
            metrics.upstream_request(_operation(method), time.perf_counter() - started, failure)
            log.info("upstream %s %s failed: %s", method, path.split("?")[0], failure)
            return None
        metrics.upstream_request(
            _operation(method), time.perf_counter() - started, response.status_code
        )
        return response


def _operation(method: str) -> str:
    """The metrics' name of a request: the client POSTs only submits and GETs only polls."""
    return "submit" if method == "POST" else "poll"


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _permanent(response: httpx.Response) -> TaskFailed:
    body = _json(response) or {}
    code = str(body.get("code") or f"HTTP{response.status_code}")
    if response.status_code in (401, 403) and code in ("InvalidApiKey", "AccessDenied", "HTTP401"):
        # Our service credentials, not the client's request: say so without details.
        return TaskFailed(UPSTREAM_CODE, "The upstream service rejected synthgate's credentials.")
    message = str(body.get("message") or f"The upstream service answered {response.status_code}.")
    return TaskFailed(code, message[:500])
