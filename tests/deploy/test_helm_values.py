"""The chart's values: each documented and typed, bad ones refused with a message naming them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
import yaml
from chart_manifests import CHART_DIR, loaded_chart, render

VALUES_FILE = CHART_DIR / "values.yaml"
SCHEMA_FILE = CHART_DIR / "values.schema.json"


def _mapping_keys(
    node: yaml.Node, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], yaml.Node]]:
    """Every key of values.yaml outside lists (list items are data, documented as a block)."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        yield (*path, key.value), key
        yield from _mapping_keys(value, (*path, key.value))


def test_every_value_has_a_comment_in_values_yaml() -> None:
    lines = VALUES_FILE.read_text().splitlines()
    root = yaml.compose(VALUES_FILE.read_text())
    undocumented = [
        ".".join(path)
        for path, key in _mapping_keys(root)
        if not lines[key.start_mark.line - 1].lstrip().startswith("#")
        # Keys inside Kubernetes objects (securityContext, resources, ...) are the API's own.
        and not _inside_free_form(path)
    ]
    assert undocumented == []


def _schema_for(path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema of ``path``, or None below an object the schema leaves free-form."""
    node: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    for part in path:
        if "properties" not in node:
            return None
        node = node["properties"][part]
    return node


def _inside_free_form(path: tuple[str, ...]) -> bool:
    parent = _schema_for(path[:-1])
    return parent is None or "properties" not in parent


def test_every_value_is_typed_and_described_in_the_schema() -> None:
    values = yaml.compose(VALUES_FILE.read_text())
    missing = []
    for path, _ in _mapping_keys(values):
        if _inside_free_form(path):
            continue  # a free-form Kubernetes object: its fields are the API's
        schema = _schema_for(path)
        if schema is None or "type" not in schema or not schema.get("description"):
            missing.append(".".join(path))
    assert missing == []


def test_schema_objects_refuse_unknown_keys() -> None:
    def walk(node: dict[str, Any], path: str) -> Iterator[str]:
        if "properties" in node and node.get("additionalProperties") is not False:
            yield path or "<root>"
        for name, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}.{name}".lstrip("."))
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")

    assert list(walk(json.loads(SCHEMA_FILE.read_text()), "")) == []


def test_values_yaml_matches_what_helm_loads() -> None:
    chart = loaded_chart()
    assert chart.values == yaml.safe_load(VALUES_FILE.read_text())
    assert chart.schema == json.loads(SCHEMA_FILE.read_text())
    chart.validate_schema(chart.values)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"gateway": {"replica": 3}}, "additional properties 'replica' not allowed"),
        ({"gateway": {"replicas": "3"}}, "got string, want integer"),
        ({"storage": {"backend": "gcs"}}, "/storage/backend"),
        ({"externalRedis": {"url": "http://redis:6379"}}, "/externalRedis/url"),
        ({"config": {"routes": {"stable-diffusion-xl": "gpu"}}}, "/config/routes"),
        (
            {"workers": {"gpu": {"pools": [{"name": "Big_Pool", "kind": "sdxl", "weights": {}}]}}},
            "/workers/gpu/pools/0/name",
        ),
        (
            {"workers": {"gpu": {"pools": [{"name": "xl", "kind": "sd3", "weights": {}}]}}},
            "/workers/gpu/pools/0/kind",
        ),
        (
            {"workers": {"gpu": {"pools": [{"name": "xl", "kind": "sdxl"}]}}},
            "missing property 'weights'",
        ),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "storage",
        "redis-scheme",
        "route",
        "pool-name",
        "pool-kind",
        "pool-weights",
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=complaint):
        render(values)


CLAIMED_POOL = {"name": "xl", "kind": "sdxl", "weights": {"existingClaim": "models"}}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"workers": {"gpu": {"terminationGracePeriodSeconds": 7200}}},
            r"workers.gpu.pools\[sdxl\].terminationGracePeriodSeconds \(7200\) must be below "
            r"config.visibilityTimeoutSeconds \(7200\)",
        ),
        (
            {"workers": {"upstream": {"enabled": True, "terminationGracePeriodSeconds": 9000}}},
            r"workers.upstream.terminationGracePeriodSeconds \(9000\) must be below",
        ),
        (
            {"workers": {"upstream": {"terminationGracePeriodSeconds": 60, "graceSeconds": 60}}},
            r"workers.upstream.terminationGracePeriodSeconds \(60\) must exceed "
            r"workers.upstream.graceSeconds \(60\)",
        ),
        (
            {"gateway": {"shutdownTimeoutSeconds": 25}},
            r"terminationGracePeriodSeconds \(30\) must exceed gateway.preStopSleepSeconds \+ "
            r"gateway.shutdownTimeoutSeconds \(30\)",
        ),
        ({"storage": {"backend": "local"}}, "needs storage.local.existingClaim"),
        ({"storage": {"s3": {"accessKeyId": "AKIA"}}}, "go together"),
        ({"gateway": {"pdb": {"minAvailable": 2}}}, r"minAvailable \(2\) must be below"),
        (
            {"gateway": {"hpa": {"enabled": False}, "replicas": 1}},
            r"minAvailable \(1\) must be below the fewest gateway replicas \(1\)",
        ),
        ({"gateway": {"hpa": {"minReplicas": 5, "maxReplicas": 3}}}, "minReplicas exceeds"),
        ({"gateway": {"ingress": {"enabled": True}}}, "ingress.host is required"),
        ({"admin": {"token": "changeme"}}, "admin.token must have at least 32 characters"),
        (
            {"gateway": {"ingress": {"enabled": True, "host": "a.b", "tls": {"enabled": True}}}},
            "tls.secretName is required",
        ),
        ({"config": {"extraEnv": {"SYNTHGATE_S3_SECRET": "x"}}}, "looks secret"),
        (
            {"config": {"routes": {"stable-diffusion-xl": "upstream"}}},
            "workers.upstream.enabled is false",
        ),
        (
            {"workers": {"gpu": {"pools": [{"name": "xl", "kind": "sdxl", "weights": {}}]}}},
            r"workers.gpu.pools\[xl\] needs weights",
        ),
        ({"workers": {"gpu": {"pools": [CLAIMED_POOL, CLAIMED_POOL]}}}, "must be unique"),
        (
            {
                "externalRedis": {"existingSecret": "redis"},
                "workers": {"gpu": {"keda": {"enabled": True}}},
            },
            "keda.redis.address is required",
        ),
        (
            {
                "externalRedis": {"url": "redis://:p%40ss@redis:6379/0"},
                "workers": {"gpu": {"keda": {"enabled": True}}},
            },
            "percent-encoded password",
        ),
        (
            {"keda": {"redis": {"passwordSecret": {"name": "redis"}}}},
            "passwordSecret.key is required",
        ),
        (
            {"redis": {"enabled": True}, "externalRedis": {"existingSecret": "redis"}},
            "exclusive",
        ),
    ],
    ids=[
        "gpu-grace",
        "upstream-grace",
        "upstream-hand-back-time",
        "gateway-drain",
        "local-claim",
        "s3-keys",
        "pdb-hpa",
        "pdb-replicas",
        "hpa-range",
        "ingress-host",
        "admin-token",
        "ingress-tls",
        "extra-env-secret",
        "route-upstream",
        "pool-weights",
        "pool-names",
        "keda-address",
        "keda-password",
        "keda-password-key",
        "redis-both",
    ],
)
def test_inconsistent_values_stop_the_install_with_a_message(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=complaint):
        render(values)


def test_a_pools_own_false_or_zero_wins_over_the_shared_value() -> None:
    rendered = render(
        {
            "workers": {
                "gpu": {
                    "keda": {"enabled": True, "maxReplicaCount": 6},
                    "pools": [
                        {**CLAIMED_POOL, "name": "on"},
                        {**CLAIMED_POOL, "name": "off", "replicas": 0, "keda": {"enabled": False}},
                    ],
                }
            }
        }
    )
    assert rendered.names("ScaledObject") == {"sg-synthgate-worker-gpu-on"}
    assert (
        rendered.get("ScaledObject", "sg-synthgate-worker-gpu-on")["spec"]["maxReplicaCount"] == 6
    )
    assert rendered.get("Deployment", "sg-synthgate-worker-gpu-off")["spec"]["replicas"] == 0
