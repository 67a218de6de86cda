"""The Grafana dashboard (helm/synthgate/files/grafana/synthgate.json, the one copy: the chart
ships it) queries only metrics synthgate exports, with sound PromQL habits, and covers
throughput, latency, queues, errors and tenants."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from exported_metrics import exported_metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "synthgate" / "files" / "grafana" / "synthgate.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_query_uses_metrics_that_synthgate_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_metric_names()
    used = {name for expr in _exprs(dashboard) for name in re.findall(r"synthgate_\w+", expr)}
    assert used and used <= exported, used - exported


def test_percentiles_aggregate_by_le_and_rates_use_the_rate_interval(
    dashboard: dict[str, Any],
) -> None:
    for expr in _exprs(dashboard):
        for by in re.findall(r"histogram_quantile\([\d.]+, sum by \(([^)]*)\)", expr):
            assert "le" in [label.strip() for label in by.split(",")], expr
        for window in re.findall(r"rate\([^\[]+\[([^\]]+)\]\)", expr):
            assert window == "$__rate_interval", expr


def test_it_covers_throughput_latency_queues_errors_and_tenants(dashboard: dict[str, Any]) -> None:
    exprs = "\n".join(_exprs(dashboard))
    assert "rate(synthgate_http_requests_total" in exprs  # throughput
    for histogram in ("http_request_duration", "worker_queue_wait", "worker_task_run"):
        p95 = (
            rf"histogram_quantile\(0\.95, sum by \(le[^)]*\) \(rate\(synthgate_{histogram}_seconds"
        )
        assert re.search(p95, exprs), histogram  # latency percentiles
    assert "synthgate_queue_depth" in exprs and "synthgate_queue_oldest_age_seconds" in exprs
    assert "synthgate_webhooks_due" in exprs and "synthgate_webhooks_oldest_due_seconds" in exprs
    assert 'code=~"4..|5.."' in exprs and "sum by (op, code)" in exprs  # errors by code
    assert "sum by (tenant)" in exprs and "synthgate_rejections_total" in exprs  # tenants


def test_panels_are_unique_and_use_the_chosen_datasource(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
