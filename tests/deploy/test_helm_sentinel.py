"""Redis through Sentinel (externalRedis.sentinel): every pod that talks to Redis gets the
sentinels, the master name and its passwords from the operator's Secrets; KEDA's scalers
become redis-sentinel ones; inconsistent values stop the install."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_manifests import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    Rendered,
    render,
    validate_manifest,
)
from test_helm_chart import (
    CHART_SECRET,
    GATEWAY,
    UPSTREAM,
    app_settings,
    container,
    env,
    expand,
    pod_spec,
    secret_ref,
    triggered_pools,
)

from taskcore.redis_connect import celery_broker

CI_VALUES = CHART_DIR / "ci" / "sentinel-values.yaml"
GPU = "sg-synthgate-worker-gpu-sdxl"
KEDA_AUTH = "sg-synthgate-keda-redis"
SENTINEL_ENV = {
    "SYNTHGATE_REDIS_SENTINELS",
    "SYNTHGATE_REDIS_SENTINEL_MASTER",
    "SYNTHGATE_REDIS_MIN_REPLICAS",
}
HOSTS = [f"redis-node-{i}.redis-headless.data.svc.cluster.local:26379" for i in range(3)]
PASSWORD = "redis-pw-SENTINEL"
OPERATOR_SECRETS = {"redis": {"redis-password": PASSWORD}, "dashscope": {"upstream-api-key": "k"}}


def _ci_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CI_VALUES.read_text())
    return loaded


def _sentinel(**settings: Any) -> dict[str, Any]:
    """Sentinels with the given settings, and a GPU pool scaled by KEDA."""
    sentinel = {"enabled": True, "hosts": ["redis-sentinel:26379"], "masterName": "mymaster"}
    return {
        "externalRedis": {"sentinel": {**sentinel, **settings}},
        "workers": {
            "gpu": {
                "keda": {"enabled": True},
                "pools": [{"name": "sdxl", "kind": "sdxl", "weights": {"existingClaim": "m"}}],
            }
        },
    }


@pytest.fixture(scope="module")
def ci() -> Rendered:
    return render(_ci_values())


def _redis_containers(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    """Every container of the release that talks to Redis (it has SYNTHGATE_REDIS_URL)."""
    found = []
    for workload in rendered.documents:
        if workload["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        spec = pod_spec(workload)
        for item in spec["containers"] + spec.get("initContainers", []):
            if "SYNTHGATE_REDIS_URL" in env(item):
                found.append((f"{workload['metadata']['name']}/{item['name']}", item))
    return found


def test_every_pod_that_talks_to_redis_gets_the_sentinels(ci: Rendered) -> None:
    containers = _redis_containers(ci)
    names = {where.partition("/")[0] for where, _ in containers}
    assert names == {GATEWAY, UPSTREAM, GPU}
    for where, item in containers:
        variables = expand(item, OPERATOR_SECRETS)
        assert variables["SYNTHGATE_REDIS_SENTINELS"] == ",".join(HOSTS), where
        assert variables["SYNTHGATE_REDIS_SENTINEL_MASTER"] == "mymaster", where
        assert variables["SYNTHGATE_REDIS_MIN_REPLICAS"] == "1", where
        assert variables["SYNTHGATE_REDIS_WAIT_TIMEOUT_MS"] == "250", where
        # The data password reaches the URL the application reads; the host is ignored.
        assert variables["SYNTHGATE_REDIS_URL"] == f"redis://:{PASSWORD}@mymaster:6379/0"
        assert variables["SYNTHGATE_REDIS_SENTINEL_PASSWORD"] == PASSWORD, where
        assert secret_ref(item, "SYNTHGATE_REDIS_SENTINEL_PASSWORD") == ("redis", "redis-password")
        assert secret_ref(item, "SYNTHGATE_REDIS_URL_PASSWORD") == ("redis", "redis-password")


def test_no_password_is_in_the_manifests_and_the_chart_keeps_no_redis_url(ci: Rendered) -> None:
    for where, item in _redis_containers(ci):
        url = env(item)["SYNTHGATE_REDIS_URL"]["value"]
        # A $(reference) to the variable set from the Secret just before it.
        assert url == "redis://:$(SYNTHGATE_REDIS_URL_PASSWORD)@mymaster:6379/0", where
        names = [entry["name"] for entry in item["env"]]
        assert names.index("SYNTHGATE_REDIS_URL_PASSWORD") < names.index("SYNTHGATE_REDIS_URL")
    assert CHART_SECRET not in ci.names("Secret")
    for doc in ci.documents:
        assert PASSWORD not in str(doc)


def test_the_application_reads_the_url_the_chart_builds(
    ci: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (A GPU worker's settings also check its weights folder, absent here; its env is the same.)
    for workload in (GATEWAY, UPSTREAM):
        settings = app_settings(ci, workload, OPERATOR_SECRETS, tmp_path, monkeypatch)
        assert settings.redis_url == f"redis://:{PASSWORD}@mymaster:6379/0", workload
        assert settings.sentinel_hosts == [(host.rpartition(":")[0], 26379) for host in HOSTS]
        assert settings.redis_sentinel_master == "mymaster"
        assert settings.redis_sentinel_password is not None
        assert settings.redis_sentinel_password.get_secret_value() == PASSWORD
        assert (settings.redis_replicas_to_wait, settings.redis_wait_timeout_ms) == (1, 250)
        # Every client is built from these (taskcore.redis_connect): the broker included.
        broker = celery_broker(settings, {})
        assert broker["broker_url"].split(";")[0] == f"sentinel://:{PASSWORD}@{HOSTS[0]}/0"
        assert broker["broker_transport_options"]["master_name"] == "mymaster"


def test_database_tls_and_no_password_shape_the_url() -> None:
    rendered = render(_sentinel(database=3, tls=True, minReplicas=0))
    variables = env(container(rendered.get("Deployment", GATEWAY)))
    assert variables["SYNTHGATE_REDIS_URL"]["value"] == "rediss://mymaster:6379/3"
    assert variables["SYNTHGATE_REDIS_MIN_REPLICAS"]["value"] == "0"
    # Unset: the application's own defaults.
    for name in (
        "SYNTHGATE_REDIS_URL_PASSWORD",
        "SYNTHGATE_REDIS_SENTINEL_PASSWORD",
        "SYNTHGATE_REDIS_WAIT_TIMEOUT_MS",
    ):
        assert name not in variables
    # KEDA reads the same database over TLS, with no credentials to give it.
    (trigger, _) = rendered.get("ScaledObject", GPU)["spec"]["triggers"]
    assert trigger["metadata"]["databaseIndex"] == "3"
    assert trigger["metadata"]["enableTLS"] == "true"
    assert "authenticationRef" not in trigger
    assert "TriggerAuthentication" not in rendered.kinds()


def test_keda_scales_with_redis_sentinel_triggers_and_both_passwords(ci: Rendered) -> None:
    for name in (GPU, UPSTREAM):
        scaled = ci.get("ScaledObject", name)
        assert triggered_pools(scaled)
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "redis-sentinel"
            metadata = trigger["metadata"]
            assert metadata["addresses"] == ",".join(HOSTS)
            assert metadata["sentinelMaster"] == "mymaster"
            assert "address" not in metadata
            assert {"listName", "listLength", "activationListLength"} <= set(metadata)
            assert trigger["authenticationRef"] == {"name": KEDA_AUTH}
    assert triggered_pools(ci.get("ScaledObject", GPU)) == ["gpu.sdxl"]
    auth = ci.get("TriggerAuthentication", KEDA_AUTH)
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "redis", "key": "redis-password"},
        {"parameter": "sentinelPassword", "name": "redis", "key": "redis-password"},
    ]


def test_keda_qualifies_bare_sentinel_hosts_with_the_release_namespace() -> None:
    rendered = render(
        _sentinel(
            hosts=["redis-sentinel:26379", "10.0.0.7:26380"],
            sentinelPasswordSecret={"name": "sentinel-auth", "key": "pw"},
        )
    )
    (trigger, _) = rendered.get("ScaledObject", GPU)["spec"]["triggers"]
    assert trigger["metadata"]["addresses"] == (
        f"redis-sentinel.{NAMESPACE}.svc:26379,10.0.0.7:26380"
    )
    # The pods are in the release namespace: the hosts reach them as given.
    gateway = env(container(rendered.get("Deployment", GATEWAY)))
    assert gateway["SYNTHGATE_REDIS_SENTINELS"]["value"] == "redis-sentinel:26379,10.0.0.7:26380"
    auth = rendered.get("TriggerAuthentication", KEDA_AUTH)["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "sentinelPassword", "name": "sentinel-auth", "key": "pw"}]


def test_keda_redis_password_secret_still_overrides() -> None:
    values = _sentinel(passwordSecret={"name": "redis", "key": "redis-password"})
    values["keda"] = {"redis": {"passwordSecret": {"name": "keda-redis", "key": "password"}}}
    rendered = render(values)
    auth = rendered.get("TriggerAuthentication", KEDA_AUTH)["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "password", "name": "keda-redis", "key": "password"}]


def test_without_sentinels_nothing_changes() -> None:
    rendered = render({})
    variables = env(container(rendered.get("Deployment", GATEWAY)))
    assert not SENTINEL_ENV & set(variables)
    assert secret_ref(container(rendered.get("Deployment", GATEWAY)), "SYNTHGATE_REDIS_URL") == (
        CHART_SECRET,
        "redis-url",
    )


def test_the_ci_value_set_is_valid_and_lints_clean(ci: Rendered) -> None:
    for manifest in ci.documents:
        for kube_version in KUBE_VERSIONS:
            validate_manifest(manifest, kube_version)
    report = helm_python.lint(CHART_DIR, _ci_values(), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


SENTINEL_ONLY = _sentinel()["externalRedis"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {**_sentinel(), "redis": {"enabled": True}},
            "externalRedis.sentinel.enabled and redis.enabled are exclusive",
        ),
        (_sentinel(hosts=[]), "needs externalRedis.sentinel.hosts"),
        (_sentinel(masterName=""), "needs externalRedis.sentinel.masterName"),
        (
            {**_sentinel(), "externalRedis": {**SENTINEL_ONLY, "existingSecret": "redis-url"}},
            "externalRedis.existingSecret is not used with externalRedis.sentinel",
        ),
        (_sentinel(hosts=["a:26379", "a:26379"]), "lists a sentinel twice"),
    ],
)
def test_inconsistent_sentinel_values_stop_the_install(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=complaint):
        render(values)


@pytest.mark.parametrize(
    "settings",
    [
        {"hosts": ["redis-sentinel"]},  # no port
        {"hosts": ["redis://redis-sentinel:26379"]},
        {"masterName": "my master"},
        {"minReplicas": -1},
        {"waitTimeoutMs": 0},
        {"passwordSecret": {"name": "redis", "key": ""}},
        {"sentinelPasword": {"name": "redis"}},
    ],
)
def test_malformed_sentinel_values_are_refused_by_the_schema(settings: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(_sentinel(**settings))
