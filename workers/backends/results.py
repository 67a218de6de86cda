"""Fetching the upstream's result images: only from allowed hosts, only images, only so big."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from taskcore.contract import ImageOutcome
from workers import metrics
from workers.backends.upstream_http import TRANSPORT_ERRORS

log = logging.getLogger("synthgate.worker.upstream")

DOWNLOAD = "download"  # the operation's name in the metrics

REJECTED = "InternalError.ResultRejected"
UNAVAILABLE = "InternalError.ResultUnavailable"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class ResultPolicy:
    hosts: tuple[str, ...]  # fnmatch patterns, lower case
    max_bytes: int
    attempts: int = 3
    timeout_seconds: float = 30.0


class _Rejected(Exception):
    pass


class _Status(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class ResultFetcher:
    """Downloads one result URL into an :class:`ImageOutcome` (PNG bytes or a coded failure)."""

    def __init__(self, http: aiohttp.ClientSession, policy: ResultPolicy) -> None:
        self._http = http
        self._policy = policy

    async def fetch(
        self, index: int, url: str, deadline: float, extra: dict[str, str] | None = None
    ) -> ImageOutcome:
        """Image ``index`` from ``url``; ``extra`` (the upstream's fields of the result)
        goes with it when it comes."""
        try:
            self._check_url(url)
        except _Rejected as exc:
            metrics.upstream_error(DOWNLOAD, "rejected")
            return ImageOutcome(index, code=REJECTED, message=str(exc))
        problem = "it could not be downloaded"
        for attempt in range(self._policy.attempts):
            started = time.perf_counter()
            try:
                png = await self._download(url, deadline)
            except _Rejected as exc:
                metrics.upstream_error(DOWNLOAD, "rejected")
                return ImageOutcome(index, code=REJECTED, message=str(exc))
            except _Status as exc:
                status = exc.status
                metrics.upstream_request(DOWNLOAD, time.perf_counter() - started, status)
                problem = f"the upstream answered {status}"
                if status < 500:
                    break
            except TRANSPORT_ERRORS as exc:
                failure = type(exc).__name__
                metrics.upstream_request(DOWNLOAD, time.perf_counter() - started, failure)
                problem = f"the download failed ({failure})"
            else:
                metrics.upstream_request(DOWNLOAD, time.perf_counter() - started, 200)
                return ImageOutcome(index, png=png, extra=extra or {})
            if time.time() + 0.5 * 2**attempt >= deadline:
                break
            await asyncio.sleep(0.5 * 2**attempt)
        log.warning("result %d from %s unavailable: %s", index, urlsplit(url).hostname, problem)
        return ImageOutcome(
            index, code=UNAVAILABLE, message=f"The result image is unavailable: {problem}."
        )

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise _Rejected("The result URL is not http(s).")
        host = (parts.hostname or "").lower()
        if not any(fnmatch.fnmatchcase(host, pattern) for pattern in self._policy.hosts):
            raise _Rejected(f"The result host {host!r} is not in the allow-list.")

    async def _download(self, url: str, deadline: float) -> bytes:
        limit = self._policy.max_bytes
        timeout = max(0.1, min(self._policy.timeout_seconds, deadline - time.time()))
        request = self._http.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        )
        async with request as response:
            if response.status != 200:
                raise _Status(response.status)
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not kind.startswith("image/"):
                raise _Rejected(f"The result is not an image (content type {kind or 'none'!r}).")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _Rejected(f"The result image is larger than {limit} bytes.")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > limit:
                    raise _Rejected(f"The result image is larger than {limit} bytes.")
        if not body.startswith(PNG_MAGIC):
            raise _Rejected("The result image is not a PNG.")
        return bytes(body)
