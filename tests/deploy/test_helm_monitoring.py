"""The chart's alerts (a PrometheusRule) and Grafana dashboard (a ConfigMap for the sidecar):
off by default, their queries sound PromQL on metrics synthgate exports, their thresholds
and labels taken from the values."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import promql_parser
import pytest
import yaml
from chart_manifests import CHART_DIR, KUBE_VERSIONS, NAMESPACE, Rendered, render, validate_manifest
from exported_metrics import exported_metric_names

CI_VALUES = CHART_DIR / "ci" / "monitoring-values.yaml"
DASHBOARD_FILE = CHART_DIR / "files" / "grafana" / "synthgate.json"
RULE = "sg-synthgate"
DASHBOARD = "sg-synthgate-dashboard"
ALERTS = {
    "SynthgateQueueWaitHigh",
    "SynthgatePoolWithoutWorkers",
    "SynthgateTaskFailureRatioHigh",
    "SynthgateRedisUnreachable",
    "SynthgateWebhookBacklog",
    "SynthgateUpstreamAccountThrottled",
}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def _ci_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CI_VALUES.read_text())
    return loaded


def _monitoring(**prometheus_rule: Any) -> dict[str, Any]:
    return {"monitoring": {"prometheusRule": {"enabled": True, **prometheus_rule}}}


def _rules(rendered: Rendered) -> list[dict[str, Any]]:
    (rule,) = rendered.of_kind("PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _by_alert(rendered: Rendered) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for rule in _rules(rendered):
        found.setdefault(rule["alert"], []).append(rule)
    return found


@pytest.fixture(scope="module")
def ci() -> Rendered:
    return render(_ci_values())


def test_alerts_and_dashboard_are_off_by_default() -> None:
    rendered = render({})
    assert "PrometheusRule" not in rendered.kinds()
    assert DASHBOARD not in rendered.names("ConfigMap")


def test_the_ci_value_set_turns_both_on_with_valid_manifests(ci: Rendered) -> None:
    (rule,) = ci.of_kind("PrometheusRule")
    assert rule["metadata"]["name"] == RULE
    assert rule["metadata"]["labels"]["release"] == "prometheus"  # the ruleSelector's label
    assert set(_by_alert(ci)) == ALERTS
    dashboard = ci.get("ConfigMap", DASHBOARD)
    for kube_version in KUBE_VERSIONS:
        validate_manifest(rule, kube_version)
        validate_manifest(dashboard, kube_version)
    report = helm_python.lint(CHART_DIR, _ci_values(), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_alert_queries_only_metrics_synthgate_exports(ci: Rendered) -> None:
    exported = exported_metric_names()
    for rule in _rules(ci):
        used = set(re.findall(r"synthgate_\w+", rule["expr"]))
        assert used and used <= exported, (rule["alert"], used - exported)


def test_every_alert_is_sound_promql(ci: Rendered) -> None:
    """What holds without a PromQL parser: brackets balance, windows are durations, every
    series is picked by the release's namespace, percentiles keep `le`."""
    for rule in _rules(ci):
        expr, name = rule["expr"], rule["alert"]
        assert DURATION.match(rule["for"]), name
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), name
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert DURATION.match(window), (name, window)
        selectors = re.findall(r"synthgate_\w+(\{[^}]*\})?", expr)
        assert selectors and all('namespace="imagegen"' in s for s in selectors), name
        for by in re.findall(r"histogram_quantile\([\d.]+, sum by \(([^)]*)\)", expr):
            assert "le" in [label.strip() for label in by.split(",")], name


def test_every_alert_parses_as_promql(ci: Rendered) -> None:
    for rule in _rules(ci):
        parsed = promql_parser.parse(rule["expr"])
        # An alert is a comparison (or a set operation over comparisons): not a bare number.
        assert type(parsed).__name__ == "BinaryExpr", rule["alert"]
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(synthgate_redis_up[5m]")


def test_alert_texts_keep_prometheus_templating_and_every_alert_its_labels(ci: Rendered) -> None:
    for rule in _rules(ci):
        assert rule["labels"] == {"severity": rule["labels"]["severity"], "team": "imaging"}
        assert set(rule["annotations"]) == {"summary", "description"}
    waits = _by_alert(ci)["SynthgateQueueWaitHigh"]
    assert all("{{ $labels.pool }}" in r["annotations"]["summary"] for r in waits)
    assert "{{ $value | humanizeDuration }}" in waits[0]["annotations"]["description"]
    severities = {r["alert"]: r["labels"]["severity"] for r in _rules(ci)}
    assert severities["SynthgateRedisUnreachable"] == "critical"
    assert severities["SynthgatePoolWithoutWorkers"] == "critical"


def test_a_pool_of_its_own_threshold_gets_a_rule_and_the_others_the_shared_one(
    ci: Rendered,
) -> None:
    waits = _by_alert(ci)["SynthgateQueueWaitHigh"]
    assert len(waits) == 2
    own, shared = waits
    assert 'pool="gpu.sdxl"' in own["expr"] and own["expr"].endswith("> 600")
    # The overridden pool is left out of the shared rule, its dots escaped for the regex.
    assert 'pool!~"gpu\\\\.sdxl"' in shared["expr"] and shared["expr"].endswith("> 300")
    assert "histogram_quantile(0.95, sum by (le, pool)" in shared["expr"]


def test_thresholds_durations_and_severities_come_from_the_values() -> None:
    rendered = render(
        _monitoring(
            alerts={
                "queueWaitHigh": {"thresholdSeconds": 45, "window": "5m", "for": "3m"},
                "taskFailureRatio": {"threshold": 0.25, "minTasks": 40, "window": "1h"},
                "webhookBacklog": {"due": 7, "oldestDueSeconds": 90, "severity": "page"},
                "upstreamAccountThrottled": {"throttles": 3, "window": "30m", "for": "0s"},
                "redisUnreachable": {"for": "30s"},
            }
        )
    )
    alerts = {r["alert"]: r for r in _rules(rendered)}
    wait = alerts["SynthgateQueueWaitHigh"]
    assert wait["for"] == "3m" and "[5m]" in wait["expr"] and wait["expr"].endswith("> 45")
    assert "pool!~" not in wait["expr"]
    ratio = alerts["SynthgateTaskFailureRatioHigh"]["expr"]
    assert ") > 0.25" in ratio and ratio.endswith(">= 40") and ratio.count("[1h]") == 3
    backlog = alerts["SynthgateWebhookBacklog"]
    assert backlog["labels"]["severity"] == "page"
    assert "synthgate_webhooks_due" in backlog["expr"] and "> 7" in backlog["expr"]
    assert "synthgate_webhooks_oldest_due_seconds" in backlog["expr"]
    assert backlog["expr"].endswith("> 90")
    throttled = alerts["SynthgateUpstreamAccountThrottled"]
    assert throttled["for"] == "0s" and "[30m]" in throttled["expr"]
    assert throttled["expr"].startswith("sum by (account) (increase(")
    assert throttled["expr"].endswith("> 3")
    assert alerts["SynthgateRedisUnreachable"]["for"] == "30s"


def test_alerts_can_be_turned_off_one_by_one() -> None:
    off = {"enabled": False}
    rendered = render(_monitoring(alerts={"webhookBacklog": off, "queueWaitHigh": off}))
    left = ALERTS - {"SynthgateWebhookBacklog", "SynthgateQueueWaitHigh"}
    assert set(_by_alert(rendered)) == left


def test_a_selector_of_ones_own_replaces_the_namespace() -> None:
    rendered = render(_monitoring(selector='job=~"synthgate.*",cluster="eu-1"'))
    for rule in _rules(rendered):
        assert "namespace=" not in rule["expr"], rule["alert"]
        for selector in re.findall(r"synthgate_\w+(\{[^}]*\})", rule["expr"]):
            assert selector.startswith('{job=~"synthgate.*",cluster="eu-1"'), selector


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (_monitoring(alerts={"queueWaitHigh": {"for": "ten minutes"}}), "for"),
        (_monitoring(alerts={"taskFailureRatio": {"threshold": 1.5}}), "threshold"),
        (_monitoring(selector="{namespace='x'}"), "selector"),
        (_monitoring(alerts={"redisUnreachable": {"severty": "critical"}}), "severty"),
        ({"monitoring": {"grafanaDashboard": {"label": "has space"}}}, "label"),
    ],
)
def test_bad_monitoring_values_are_refused(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=complaint):
        render(values)


def test_the_dashboard_configmap_carries_the_charts_one_copy_for_the_sidecar(
    ci: Rendered,
) -> None:
    configmap = ci.get("ConfigMap", DASHBOARD)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "synthgate"}
    assert configmap["metadata"]["namespace"] == NAMESPACE
    shipped = json.loads(configmap["data"]["synthgate.json"])
    assert shipped == json.loads(DASHBOARD_FILE.read_text())
    assert shipped["uid"] == "synthgate"
    # One copy: nothing outside the chart keeps another dashboard file.
    assert not (CHART_DIR.parents[1] / "deploy" / "grafana" / "synthgate.json").exists()


def test_the_dashboard_label_and_namespace_are_configurable() -> None:
    rendered = render(
        {
            "monitoring": {
                "grafanaDashboard": {
                    "enabled": True,
                    "label": "dashboards.example.com/load",
                    "labelValue": "yes",
                    "labels": {"team": "imaging"},
                    "namespace": "grafana",
                }
            }
        }
    )
    metadata = rendered.get("ConfigMap", DASHBOARD)["metadata"]
    assert metadata["namespace"] == "grafana"
    assert metadata["labels"]["dashboards.example.com/load"] == "yes"
    assert metadata["labels"]["team"] == "imaging"
    assert "grafana_dashboard" not in metadata["labels"]
