"""Reaching Redis: one URL, or the primary that Redis Sentinel names (docs/reliability.md).

Every client of ours (the gateway, GPU and upstream workers, the reaper, webhook delivery,
the CLI) is built here, so that setting ``SYNTHGATE_REDIS_SENTINELS`` and
``SYNTHGATE_REDIS_SENTINEL_MASTER`` moves all of them to Sentinel at once. With sentinels,
the pool asks them for the current primary on every new connection and drops connections
to a server that is no longer it, so a failover needs no restart. What is not an address
still comes from ``SYNTHGATE_REDIS_URL``: password, user name, database and TLS (its
host and port are unused); the sentinels' own password is
``SYNTHGATE_REDIS_SENTINEL_PASSWORD``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as asentinel
import redis.sentinel as sentinel
from redis.connection import parse_url

from taskcore.settings import Settings


def describe_target(settings: Settings) -> str:
    """Where Redis is looked for, naming the settings, without any password (for logs)."""
    if settings.sentinel_hosts:
        hosts = ",".join(f"{host}:{port}" for host, port in settings.sentinel_hosts)
        return (
            f"SYNTHGATE_REDIS_SENTINELS={hosts} "
            f"SYNTHGATE_REDIS_SENTINEL_MASTER={settings.redis_sentinel_master}"
        )
    return f"SYNTHGATE_REDIS_URL={redact_url(settings.redis_url)}"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _url_kwargs(settings: Settings) -> dict[str, Any]:
    """What a connection takes from the URL besides the address (sentinel mode)."""
    kwargs = dict(parse_url(settings.redis_url))  # type: ignore[no-untyped-call]
    for address in ("host", "port", "path", "connection_class"):
        kwargs.pop(address, None)
    if urlsplit(settings.redis_url).scheme == "rediss":
        kwargs["ssl"] = True
    return kwargs


def _sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_connect_timeout_seconds,
    }
    if settings.redis_sentinel_password is not None:
        kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    return kwargs


class _BlockingSentinelPool(sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """A sentinel-managed pool whose callers wait for a free connection (workers)."""


class _AsyncBlockingSentinelPool(asentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The asyncio twin of :class:`_BlockingSentinelPool`."""


@dataclass(frozen=True)
class _Flavour:
    """The classes a client of one kind (threads or asyncio) is made of."""

    redis: Any
    sentinel: Any
    blocking_pool: Any
    blocking_sentinel_pool: Any


_SYNC = _Flavour(
    redis.Redis, sentinel.Sentinel, redis.BlockingConnectionPool, _BlockingSentinelPool
)
_ASYNC = _Flavour(
    aioredis.Redis,
    asentinel.Sentinel,
    aioredis.BlockingConnectionPool,
    _AsyncBlockingSentinelPool,
)


def _client(
    flavour: _Flavour,
    settings: Settings,
    max_connections: int | None,
    wait_for_connection: float | None,
    options: dict[str, Any],
) -> Any:
    if settings.sentinel_hosts:
        manager = flavour.sentinel(
            settings.sentinel_hosts, sentinel_kwargs=_sentinel_kwargs(settings)
        )
        kwargs = {**_url_kwargs(settings), **options}
        if max_connections is not None:
            kwargs["max_connections"] = max_connections
        if wait_for_connection is not None:
            kwargs["connection_pool_class"] = flavour.blocking_sentinel_pool
            kwargs["timeout"] = wait_for_connection
        return manager.master_for(settings.redis_sentinel_master, **kwargs)
    if wait_for_connection is not None:
        pool = flavour.blocking_pool.from_url(
            settings.redis_url,
            max_connections=max_connections or 50,
            timeout=wait_for_connection,
            **options,
        )
        return flavour.redis(connection_pool=pool)
    if max_connections is not None:
        options["max_connections"] = max_connections
    return flavour.redis.from_url(settings.redis_url, **options)


def sync_client(
    settings: Settings,
    *,
    max_connections: int | None = None,
    wait_for_connection: float | None = None,
    **options: Any,
) -> redis.Redis:
    """A client for threads and processes. ``wait_for_connection``: a bounded pool whose
    callers wait up to that many seconds for a free connection instead of failing."""
    client: redis.Redis = _client(_SYNC, settings, max_connections, wait_for_connection, options)
    return client


def async_client(
    settings: Settings,
    *,
    max_connections: int | None = None,
    wait_for_connection: float | None = None,
    **options: Any,
) -> aioredis.Redis:
    """A client for an asyncio loop; arguments as :func:`sync_client`."""
    client: aioredis.Redis = _client(
        _ASYNC, settings, max_connections, wait_for_connection, options
    )
    return client


def celery_broker(settings: Settings, transport_options: dict[str, Any]) -> dict[str, Any]:
    """Celery's broker settings (``broker_url``, ``broker_transport_options`` with
    ``transport_options`` in them, and ``broker_use_ssl`` for TLS with sentinels): kombu's
    ``sentinel://`` transport with the master name when sentinels are set, else
    ``redis_url`` itself. Kombu asks the sentinels with ``sentinel_kwargs`` (their own
    password) and logs into the primary with the URL's user and password."""
    if not settings.sentinel_hosts:
        return {"broker_url": settings.redis_url, "broker_transport_options": transport_options}
    parts = urlsplit(settings.redis_url)
    auth = ""
    if parts.password is not None:
        auth = f"{parts.username or ''}:{parts.password}@"
    path = parts.path if parts.path not in ("", "/") else "/0"
    url = ";".join(
        f"sentinel://{auth}{host}:{port}{path}" for host, port in settings.sentinel_hosts
    )
    options = {
        **transport_options,
        "master_name": settings.redis_sentinel_master,
        "sentinel_kwargs": _sentinel_kwargs(settings),
    }
    config: dict[str, Any] = {"broker_url": url, "broker_transport_options": options}
    if parts.scheme == "rediss":
        ssl_options = {k: v for k, v in _url_kwargs(settings).items() if k.startswith("ssl_")}
        config["broker_use_ssl"] = ssl_options or {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return config
