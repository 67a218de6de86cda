"""The chart-testing value sets (helm/synthgate/ci/*.yaml): each renders, lints and validates.

chart-testing (`ct lint`, `ct install`) installs the chart once per file of ci/; these tests
do what it checks without a cluster, for every file found there, so a set added later is
covered as soon as it exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_manifests import CHART_DIR, KUBE_VERSIONS, NAMESPACE, render, validate_manifest

CI_FILES = sorted((CHART_DIR / "ci").glob("*.yaml"))


def ci_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path.name} is not a mapping of values"
    return values


def test_the_chart_testing_sets_cover_defaults_production_upstream_and_gpu_keda() -> None:
    names = {path.name for path in CI_FILES}
    expected = {
        "defaults-values.yaml",
        "production-values.yaml",
        "upstream-only-values.yaml",
        "gpu-keda-values.yaml",
    }
    assert expected <= names


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.name)
def test_each_ci_set_renders_valid_manifests(path: Path) -> None:
    rendered = render(ci_values(path))
    assert rendered.of_kind("Deployment"), f"{path.name} renders no Deployment"
    for kube_version in KUBE_VERSIONS:
        for manifest in rendered.documents:
            validate_manifest(manifest, kube_version)


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.name)
def test_helm_lint_reports_nothing_for_each_ci_set(path: Path) -> None:
    report = helm_python.lint(CHART_DIR, ci_values(path), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_production_set_uses_external_redis_and_s3_from_secrets() -> None:
    rendered = render(ci_values(CHART_DIR / "ci" / "production-values.yaml"))
    assert "StatefulSet" not in rendered.kinds()  # no bundled Redis
    config = rendered.get("ConfigMap", "sg-synthgate-config")["data"]
    assert config["SYNTHGATE_STORAGE"] == "s3"
    gateway = rendered.get("Deployment", "sg-synthgate-gateway")
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SYNTHGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "synthgate-redis"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "synthgate-s3"


def test_the_gpu_keda_set_scales_two_gpu_pools_on_their_queues() -> None:
    rendered = render(ci_values(CHART_DIR / "ci" / "gpu-keda-values.yaml"))
    gpu = {
        name
        for name in rendered.names("ScaledObject")
        if name.startswith("sg-synthgate-worker-gpu")
    }
    assert gpu == {"sg-synthgate-worker-gpu-sdxl", "sg-synthgate-worker-gpu-sd15"}


def test_prometheus_rules_of_a_monitoring_set_are_checked_against_the_operators_fields() -> None:
    """A set that turns alerts on renders a PrometheusRule, a CRD kubernetes-validate lacks."""
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "sg-synthgate"},
        "spec": {
            "groups": [
                {
                    "name": "synthgate",
                    "rules": [{"alert": "SynthgateDown", "expr": "up == 0", "for": "5m"}],
                }
            ]
        },
    }
    validate_manifest(rule, KUBE_VERSIONS[-1])
    group = rule["spec"]["groups"][0]  # type: ignore[index]
    misspelt = {**group, "rules": [{"alert": "SynthgateDown", "exprs": "up == 0"}]}
    with pytest.raises(Exception, match="exprs"):
        validate_manifest({**rule, "spec": {"groups": [misspelt]}}, KUBE_VERSIONS[-1])
