"""The gateway's start-up while Redis is away or not usable yet (docs/reliability.md).

The app serves at once: ``/healthz`` answers 200, ``/readyz`` 503 with the reason, and
every other request the usual 503 ``ServiceUnavailable`` with ``Retry-After``
(:class:`StartupGate`), while :class:`GatewayStartup` waits for Redis in the background
with a growing backoff (:mod:`taskcore.redis_startup`: one log line naming the setting
and the error, repeated now and then, never a traceback). Once Redis answers and passes
the start-up checks, the steps of the start-up that need it run (the URL signing secret,
the dev key) and the gateway serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio as aioredis
from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.edge.connections import RETRY_AFTER_SECONDS
from gateway.edge.errors import ServiceUnavailable
from gateway.edge.failures import failure_reply
from taskcore.redis_startup import StartupWait, attempt_async
from taskcore.settings import Settings

log = logging.getLogger("synthgate.gateway")

# Answered while starting: the probes, the metrics (synthgate_redis_up 0), and the pages
# that need no Redis: the API docs and schema, the web console's static files.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/docs/assets/", "/console/")


class GatewayStartup:
    """Where the gateway's start-up stands: :attr:`ready` once Redis was usable and the
    steps that need it ran; :attr:`problem` says what it waits for meanwhile."""

    def __init__(self, settings: Settings) -> None:
        self.wait = StartupWait(settings, "the gateway")
        self.ready = False
        self._retrying: asyncio.Task[None] | None = None

    @property
    def problem(self) -> str:
        return "" if self.ready else self.wait.problem or "starting"

    async def begin(self, client: aioredis.Redis, connected: Callable[[], Awaitable[None]]) -> None:
        """Try once (so a gateway whose Redis answers starts ready, as before); else go
        on trying in the background. ``connected`` runs the steps that need Redis."""
        delay = await self._step(client, connected)
        if delay is not None:
            self._retrying = asyncio.create_task(self._retry(client, connected, delay))

    async def close(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            await asyncio.gather(self._retrying, return_exceptions=True)

    async def _step(
        self, client: aioredis.Redis, connected: Callable[[], Awaitable[None]]
    ) -> float | None:
        delay = await attempt_async(self.wait, client)
        if delay is not None:
            return delay
        try:
            await connected()
        except redis.RedisError as exc:  # gone again in between: wait on
            return self.wait.failed(exc)
        self.ready = True
        return None

    async def _retry(
        self, client: aioredis.Redis, connected: Callable[[], Awaitable[None]], delay: float
    ) -> None:
        pause: float | None = delay
        try:
            while pause is not None:
                await asyncio.sleep(pause)
                pause = await self._step(client, connected)
        except Exception:  # a bug, not Redis: say it, since the gateway now stays unready
            log.exception("the gateway's start-up failed; it stays unready")
            raise
        log.info("the gateway serves")


def starting_up() -> ServiceUnavailable:
    """The answer to a request that arrives before the start-up is done."""
    return ServiceUnavailable(
        "Service temporarily unavailable: the gateway is starting and the status store is "
        f"not usable yet; retry in {RETRY_AFTER_SECONDS} s.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class StartupGate:
    """Answers 503 to every request but :data:`OPEN_PATHS` and :data:`OPEN_PREFIXES` until
    the start-up is done."""

    def __init__(self, app: ASGIApp, startup: GatewayStartup) -> None:
        self.app = app
        self.startup = startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.startup.ready
            or scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        response = failure_reply(Request(scope, receive), starting_up())
        await response(scope, receive, send)
