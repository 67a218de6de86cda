"""The chart's values: each documented and typed, bad ones refused with a message naming them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest
import yaml
from chart_manifests import CHART_DIR, FINE_TUNE, loaded_chart, render

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
        if path == "global":
            return  # Helm hands a subchart the parent's whole `global`: its other keys pass.
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
        (
            {"catalog": {"models": [{**FINE_TUNE, "max_steps": 30}]}},
            "additional properties 'max_steps' not allowed",
        ),
        (
            {"catalog": {"models": [{**FINE_TUNE, "runs": "gpu"}]}},
            "/catalog/models/0/runs",
        ),
        ({"catalog": {"models": [{"name": "no-size"}]}}, "missing property 'size'"),
        (
            {"upstream": {"accounts": [{"name": "main", "apiKey": "k", "maxRunning": 0}]}},
            "/upstream/accounts/0/maxRunning",
        ),
        (
            {"upstream": {"accounts": [{"name": "main", "api_key": "k"}]}},
            "additional properties 'api_key' not allowed",
        ),
        ({"workers": {"upstream": {"queue": "upstream;gpu.sdxl"}}}, "/workers/upstream/queue"),
        ({"global": {"imagePullSecrets": ["Reg_Cred"]}}, "/global/imagePullSecrets/0"),
        (
            {"workers": {"gpu": {"pdb": {"maxUnavailable": "half"}}}},
            "/workers/gpu/pdb/maxUnavailable",
        ),
        (
            {"workers": {"upstream": {"livenessProbe": {"path": "/healthz"}}}},
            "additional properties 'path' not allowed",
        ),
        ({"gateway": {"ingress": {"hosts": ["Img.Example.com"]}}}, "/gateway/ingress/hosts/0"),
        ({"networkPolicy": {"clientsFrom": [{}]}}, "/networkPolicy/clientsFrom/0"),
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
        "catalog-unknown-key",
        "catalog-runs",
        "catalog-size",
        "account-limit",
        "account-snake-case",
        "upstream-queue",
        "pull-secret-name",
        "pdb-percentage",
        "probe-path",
        "ingress-host-name",
        "network-peer",
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=complaint):
        render(values)


CLAIMED_POOL = {"name": "xl", "kind": "sdxl", "weights": {"existingClaim": "models"}}
UPSTREAM_WORKER = {"workers": {"upstream": {"enabled": True}}}
ACCOUNT = {"name": "main", "apiKey": "k"}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"workers": {"gpu": {"terminationGracePeriodSeconds": 7200}}},
            r"workers.gpu.pools\[sdxl\].terminationGracePeriodSeconds \(7200\) must be below "
            r"config.visibilityTimeoutSeconds \(7200\)",
        ),
        (
            {
                "upstream": {"apiKey": "k"},
                "workers": {"upstream": {"enabled": True, "terminationGracePeriodSeconds": 9000}},
            },
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
        ({"gateway": {"ingress": {"enabled": True}}}, "ingress.hosts is required"),
        (
            {"gateway": {"ingress": {"host": "a.b", "hosts": ["c.d"]}}},
            "ingress.host .a.b. and gateway.ingress.hosts are exclusive.*move it into",
        ),
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
            {"config": {"routes": {"dall-e-3": "upstream"}}, "upstream": {"apiKey": "k"}},
            "config.routes names dall-e-3, which is not a model of the catalog",
        ),
        (
            {"config": {"routes": {"wanx-v1": "both"}}, "upstream": {"apiKey": "k"}},
            "config.routes sends wanx-v1 to both, but it has no local pipeline family",
        ),
        (
            {"catalog": {"models": [{**FINE_TUNE, "runs": "both"}]}},
            r"catalog.models\[acme-sdxl\] runs both, but workers.upstream.enabled is false",
        ),
        (
            {"catalog": {"models": [{**FINE_TUNE, "family": ""}]}},
            r"catalog.models\[acme-sdxl\] runs local and needs family",
        ),
        (
            {"catalog": {"models": [FINE_TUNE, FINE_TUNE]}},
            "model names must be unique in catalog.models",
        ),
        ({**UPSTREAM_WORKER}, "workers.upstream.enabled needs a DashScope account"),
        (
            {"upstream": {"apiKey": "k", "accounts": [ACCOUNT]}},
            "the application ignores the single key when accounts are set",
        ),
        (
            {"upstream": {"accounts": [ACCOUNT], "accountsSecret": {"name": "accounts"}}},
            "upstream.accounts and upstream.accountsSecret are exclusive",
        ),
        (
            {"upstream": {"accounts": [{"name": "main"}]}},
            r"upstream.accounts\[main\] needs its API key",
        ),
        ({"upstream": {"accounts": [ACCOUNT, ACCOUNT]}}, "account names must be unique"),
        (
            {"upstream": {"accounts": [{**ACCOUNT, "models": ["wanx-v2"]}]}},
            r"upstream.accounts\[main\] names wanx-v2, which is not a model of the catalog",
        ),
        (
            {"upstream": {"accounts": [{**ACCOUNT, "maxRunningByModel": {"wanx-v9": 1}}]}},
            r"upstream.accounts\[main\] names wanx-v9",
        ),
        (
            {
                "upstream": {"apiKey": "k"},
                "workers": {"upstream": {"enabled": True, "queue": "upstream,gpu.sdxl"}},
            },
            "workers.upstream.queue names gpu.sdxl, which is not an upstream pool",
        ),
        (
            {
                "upstream": {"apiKey": "k"},
                "workers": {"upstream": {"enabled": True, "queue": "upstream.stable-diffusion-xl"}},
            },
            "workers.upstream.queue names upstream.stable-diffusion-xl",
        ),
        ({"config": {"extraEnv": {"SYNTHGATE_UPSTREAM_ACCOUNTS": "[]"}}}, "looks secret"),
        (
            {"config": {"extraEnv": {"SYNTHGATE_MODEL_CATALOG": "/x.yaml"}}},
            "set catalog.models or config.routes instead",
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
        "ingress-host-and-hosts",
        "admin-token",
        "ingress-tls",
        "extra-env-secret",
        "route-upstream",
        "route-unknown-model",
        "route-no-family",
        "catalog-upstream",
        "catalog-family",
        "catalog-names",
        "upstream-account",
        "key-and-accounts",
        "accounts-twice",
        "account-key",
        "account-names",
        "account-models",
        "account-limit-models",
        "upstream-queue-local",
        "upstream-queue-unrouted",
        "extra-env-accounts",
        "extra-env-catalog",
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
