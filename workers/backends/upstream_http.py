"""A retrying JSON client for DashScope's HTTP API, bounded by a per-task deadline.

Transient failures (connection errors, timeouts, 5xx, malformed JSON) are retried
with capped exponential backoff and full jitter; 429 waits for ``Retry-After``.
Anything else (400, 401, 403, 404) is permanent. Nothing here ever puts the API
key into a message: errors carry the upstream's code and message, or our own.

The client is aiohttp: one upstream worker makes a few hundred requests a second,
and aiohttp's C parser costs about a seventh of httpx's CPU per request (measured
in ``bench/README.md``), which is what lets one process keep 200+ tasks moving.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from workers import metrics
from workers.backends import TaskFailed

log = logging.getLogger("synthgate.worker.upstream")

TIMEOUT_CODE = "InternalError.Timeout"
UPSTREAM_CODE = "InternalError.Upstream"

# What a request can fail with short of an answer: refused or dropped connections,
# malformed HTTP, and timeouts (asyncio's, which aiohttp raises for its own limits).
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying: backoff base and cap (seconds)."""

    base_seconds: float = 0.2
    max_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream response, read whole (DashScope's JSON bodies are small)."""

    status: int
    body: bytes
    retry_after: str = ""


def retry_after(value: str, fallback: float) -> float:
    """Seconds from a ``Retry-After`` value (delta or HTTP date), else ``fallback``."""
    value = value.strip()
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


def open_session(max_connections: int) -> aiohttp.ClientSession:
    """The pooled session (call it on the loop that will use it).

    Requests are short (submit, poll, download), so a few keep-alive connections
    carry hundreds of tasks in flight. No cookies, no environment proxies.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )


class UpstreamClient:
    """Calls ``{base_url}/...`` with the service key; returns decoded JSON bodies of 200s."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        policy: RetryPolicy,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._policy = policy
        self._timeout = timeout_seconds

    async def call(
        self,
        method: str,
        path: str,
        deadline: float,
        what: str,
        json: Any = None,
        headers: dict[str, str] | None = None,
        turn: Callable[[], Awaitable[None]] | None = None,
        throttled: Callable[[float], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """One logical request, retried until it answers 200 or the deadline passes.

        ``turn()`` is awaited before each attempt (a submit waits for its account's turn);
        ``throttled(seconds)`` hears of each 429 and how long DashScope asked to wait."""
        attempt = 0
        while True:
            if turn is not None:
                await turn()
            answer = await self._attempt(method, path, deadline, json, headers)
            if answer is not None and answer.status == 200:
                body = _json(answer.body)
                if body is not None:
                    return body
                metrics.upstream_error(_operation(method), "malformed")
                log.warning("upstream %s answered malformed JSON; retrying", what)
            elif answer is not None and answer.status == 429:
                delay = retry_after(answer.retry_after, self._policy.backoff(attempt))
                log.info("upstream throttled %s; retrying in %.2fs", what, delay)
                if throttled is not None:
                    await throttled(delay)
                await sleep_until_or_fail(delay + random.uniform(0, 0.1), deadline, what)
                attempt += 1
                continue
            elif answer is not None and answer.status < 500:
                raise _permanent(answer)
            await sleep_until_or_fail(self._policy.backoff(attempt), deadline, what)
            attempt += 1

    async def _attempt(
        self,
        method: str,
        path: str,
        deadline: float,
        json: Any,
        extra_headers: dict[str, str] | None,
    ) -> Answer | None:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TaskFailed(TIMEOUT_CODE, "The upstream task did not finish before the deadline.")
        headers = self._headers
        data = None
        if json is not None:
            data = orjson.dumps(json)
            headers = {**headers, "Content-Type": "application/json", **(extra_headers or {})}
        elif extra_headers:
            headers = {**headers, **extra_headers}
        started = time.perf_counter()
        try:
            async with self._http.request(
                method,
                f"{self._base}{path}",
                headers=headers,
                data=data,
                timeout=aiohttp.ClientTimeout(total=min(self._timeout, remaining)),
                allow_redirects=False,
            ) as response:
                answer = Answer(
                    response.status, await response.read(), response.headers.get("Retry-After", "")
                )
        except TRANSPORT_ERRORS as exc:  # connect errors, timeouts, dropped connections
            failure = type(exc).__name__
            metrics.upstream_request(_operation(method), time.perf_counter() - started, failure)
            log.info("upstream %s %s failed: %s", method, path.split("?")[0], failure)
            return None
        metrics.upstream_request(_operation(method), time.perf_counter() - started, answer.status)
        return answer


def _operation(method: str) -> str:
    """The metrics' name of a request: the client POSTs only submits and GETs only polls."""
    return "submit" if method == "POST" else "poll"


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        decoded = orjson.loads(body)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _permanent(answer: Answer) -> TaskFailed:
    body = _json(answer.body) or {}
    status = answer.status
    code = str(body.get("code") or f"HTTP{status}")
    if status in (401, 403) and code in ("InvalidApiKey", "AccessDenied", "HTTP401"):
        # Our service credentials, not the client's request: say so without details.
        return TaskFailed(UPSTREAM_CODE, "The upstream service rejected synthgate's credentials.")
    message = str(body.get("message") or f"The upstream service answered {status}.")
    return TaskFailed(code, message[:500])
