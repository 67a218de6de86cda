"""Every Prometheus metric of the gateway, the ASGI middleware that records requests, and
the ``/metrics`` exposition.

Labels are bounded: routes are the app's route templates (an unmatched path is
``unmatched``), methods a fixed set, tenants only those an API key resolved to, models
and pools from the catalog, codes from the API error tree. Never a task id, key or prompt.

With several gateway processes (``uvicorn --workers``), set ``PROMETHEUS_MULTIPROC_DIR``
to an empty folder before they start: each process writes its samples there and a scrape
of any of them sums all (prometheus_client's multiprocess mode). Queue gauges are read
from Redis at scrape time, so they hold no per-process state.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.operations.pool_stats import AccountStats, PoolStats
from gateway.operations.webhook_stats import WebhookStats
from taskcore.logs import context_value, log_context

log = logging.getLogger("synthgate.gateway.access")

UNMATCHED = "unmatched"
NO_TENANT = "none"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "synthgate_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "code"],
)
REQUEST_SECONDS = Histogram(
    "synthgate_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
TENANT_REQUESTS = Counter(
    "synthgate_tenant_requests_total",
    "Requests with a valid API key, by tenant and route template (submit, fetch, list...).",
    ["tenant", "route"],
)
TASKS_SUBMITTED = Counter(
    "synthgate_tasks_submitted_total",
    "Tasks accepted and queued, by model, tenant and pool.",
    ["model", "tenant", "pool"],
)
REJECTIONS = Counter(
    "synthgate_rejections_total",
    "Requests refused with 403 or 429 (limits, quotas, access), by tenant and error code.",
    ["tenant", "code"],
)


def record_submit(tenant: str, model: str, pool: str) -> None:
    _submitted(model, tenant, pool).inc()


# Process-level caches of labelled children: ``labels()`` takes a lock and builds a key on
# every call, a few microseconds a request (bench/README.md). The labels are bounded.
@functools.lru_cache(maxsize=4096)
def _submitted(model: str, tenant: str, pool: str) -> Counter:
    return TASKS_SUBMITTED.labels(model, tenant, pool)


@functools.lru_cache(maxsize=4096)
def _tenant_requests(tenant: str, route: str) -> Counter:
    return TENANT_REQUESTS.labels(tenant, route)


def record_rejection(tenant: str, code: str) -> None:
    """A 403/429 answer; ``tenant`` is '' when the caller is not known (yet)."""
    REJECTIONS.labels(tenant or NO_TENANT, code).inc()


class MetricsMiddleware:
    """Counts and times each HTTP request and binds its ``request_id`` to its log lines.

    Plain ASGI and cheap: label children are cached by (route, method, status), so a
    request costs two clock reads, a dict lookup and three increments. Added inside
    :class:`~gateway.edge.responses.RequestIdMiddleware`, which sets the id it reads.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with log_context(request_id=scope.get("synthgate.request_id", "")):
            try:
                await self.app(scope, receive, send_and_note_status)
            finally:
                self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", UNMATCHED)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        children = self._children.get((route, method, status))
        if children is None:
            children = (
                REQUESTS.labels(route, method, str(status)),
                REQUEST_SECONDS.labels(route, method),
            )
            self._children[(route, method, status)] = children
        children[0].inc()
        children[1].observe(seconds)
        tenant = context_value("tenant")
        if tenant:
            _tenant_requests(tenant, route).inc()
        level = logging.INFO if status >= 400 else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "http_status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )


@functools.cache
def _registry() -> CollectorRegistry:
    """This process's samples, or every gateway process's in multiprocess mode."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    return registry


class _PoolCollector:
    """Queue depth, oldest waiting age and live workers per pool, as read from Redis."""

    def __init__(self, stats: Iterable[PoolStats] | None) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("synthgate_redis_up", "Whether Redis answered this scrape.")
        up.add_metric([], 0.0 if self._stats is None else 1.0)
        yield up
        if self._stats is None:
            return
        families = (
            ("synthgate_queue_depth", "Tasks waiting in the pool's queue.", "depth"),
            (
                "synthgate_queue_oldest_age_seconds",
                "How long the oldest waiting task of the pool has waited since submit.",
                "oldest_age_seconds",
            ),
            ("synthgate_pool_workers", "Workers with a live heartbeat.", "live_workers"),
        )
        for name, documentation, field in families:
            family = GaugeMetricFamily(name, documentation, labels=["pool"])
            for stats in self._stats:
                family.add_metric([stats.pool], float(getattr(stats, field)))
            yield family


class _AccountCollector:
    """Each DashScope account's running tasks per model, its limit, and what waits."""

    def __init__(self, accounts: Iterable[AccountStats]) -> None:
        self._accounts = list(accounts)

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "synthgate_upstream_account_running",
            "Tasks running on DashScope under the account, per model (all workers).",
            labels=["account", "model"],
        )
        limit = GaugeMetricFamily(
            "synthgate_upstream_account_max_running",
            "The account's limit of tasks running at once, per model.",
            labels=["account", "model"],
        )
        waiting = GaugeMetricFamily(
            "synthgate_upstream_account_waiting",
            "Tasks waiting in the fair queue for the models the account serves.",
            labels=["account"],
        )
        for stats in self._accounts:
            for model, count in stats.running.items():
                running.add_metric([stats.account, model], float(count))
                limit.add_metric([stats.account, model], float(stats.max_running[model]))
            waiting.add_metric([stats.account], float(stats.waiting))
        yield from (running, limit, waiting)


class _WebhookCollector:
    """The webhook deliveries still to make, those due and not taken, and the oldest's wait."""

    def __init__(self, stats: WebhookStats | None) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        if self._stats is None:
            return
        yield GaugeMetricFamily(
            "synthgate_webhooks_pending",
            "Webhook deliveries not made yet: due, being delivered, or waiting for a retry.",
            value=float(self._stats.pending),
        )
        yield GaugeMetricFamily(
            "synthgate_webhooks_due",
            "Webhook deliveries due now that no worker has taken (the backlog).",
            value=float(self._stats.due),
        )
        yield GaugeMetricFamily(
            "synthgate_webhooks_oldest_due_seconds",
            "How long the earliest due webhook delivery has been due (0: none is).",
            value=self._stats.oldest_due_seconds,
        )


def render(
    stats: Iterable[PoolStats] | None,
    accounts: Iterable[AccountStats] = (),
    webhooks: WebhookStats | None = None,
) -> bytes:
    """The exposition text: recorded metrics plus the pool gauges (None: Redis is down),
    the DashScope accounts' gauges and the webhook backlog's (None: left out)."""
    pools = CollectorRegistry(auto_describe=False)
    pools.register(_PoolCollector(stats))
    pools.register(_AccountCollector(accounts))
    pools.register(_WebhookCollector(webhooks))
    return generate_latest(_registry()) + generate_latest(pools)
