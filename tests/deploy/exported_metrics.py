"""Every metric name synthgate's gateway and workers expose, for checking the queries of the
dashboard and of the chart's alerts against them."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY, generate_latest

import workers.metrics  # noqa: F401  (registers the worker metrics in this process)
from gateway.operations.metrics import render
from gateway.operations.pool_stats import AccountStats, PoolStats
from gateway.operations.webhook_stats import WebhookStats


def exported_metric_names() -> set[str]:
    """Every name a gateway scrape (Redis answering) or a worker scrape can hold, histograms
    with their series."""
    gateway = render(
        [PoolStats("gpu.sdxl", 0, 0.0, 0)],
        [AccountStats("main", {"wanx-v1": 0}, {"wanx-v1": 2}, 0)],
        WebhookStats(0, 0, 0.0),
    ).decode()
    text = gateway + generate_latest(REGISTRY).decode()
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        suffixes = ("_bucket", "_count", "_sum") if kind == "histogram" else ("",)
        names.update(name + suffix for suffix in suffixes)
    return names
