"""The gateway's Redis client, and which Redis failures mean "unavailable for now".

While Redis is down or not answering, every request that needs it fails fast with 503
``ServiceUnavailable`` and ``Retry-After`` (see :func:`unavailable`): connects and replies
are bounded by ``SYNTHGATE_REDIS_CONNECT_TIMEOUT_SECONDS`` / ``..._TIMEOUT_SECONDS``, and a
command is never retried, since a retried submit script could run twice. Nothing has to
reconnect by hand when Redis is back: the pool checks each connection it hands out and
replaces one that Redis closed.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis import exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.edge.errors import ServiceUnavailable
from taskcore import redis_connect
from taskcore.settings import Settings

# Redis is usually back within seconds (a restart, a failover); clients wait this long.
RETRY_AFTER_SECONDS = 2

# Connection refused or reset, timeouts, a Redis still loading its data (BusyLoadingError is
# a ConnectionError), a replica that is read-only after a failover, a full Redis under
# ``noeviction``, and a connection pool with no free connection.
UNAVAILABLE_ERRORS: tuple[type[exceptions.RedisError], ...] = (
    exceptions.ConnectionError,
    exceptions.TimeoutError,
    exceptions.ReadOnlyError,
    exceptions.OutOfMemoryError,
)


def open_redis(settings: Settings, max_connections: int = 256) -> aioredis.Redis:
    """The gateway's client: bounded connect and reply times, no retries."""
    return redis_connect.async_client(
        settings,
        max_connections=max_connections,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )


def unavailable(exc: exceptions.RedisError) -> ServiceUnavailable:
    """The client's answer to a Redis failure in :data:`UNAVAILABLE_ERRORS`."""
    if isinstance(exc, exceptions.OutOfMemoryError):
        reason = "the status store is full"
    elif isinstance(exc, exceptions.ReadOnlyError):
        reason = "the status store is read-only (failing over)"
    else:
        reason = "the status store is unreachable"
    return ServiceUnavailable(
        f"Service temporarily unavailable: {reason}; retry in {RETRY_AFTER_SECONDS} s.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
