"""What a platform team expects of the chart: worker probes, disruption budgets and spread,
subchart values (global registry and pull secrets, labels, extra volumes), several ingress
hosts, in-cluster callers admitted by the gateway's NetworkPolicy."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_manifests import CHART_DIR, Manifest, Rendered, parse_rendered, render

GATEWAY = "sg-synthgate-gateway"
UPSTREAM = "sg-synthgate-worker-upstream"
SDXL = "sg-synthgate-worker-gpu-sdxl"
SD15 = "sg-synthgate-worker-gpu-sd15"
POD_KINDS = ("Deployment", "StatefulSet")
CLAIMED = {"existingClaim": "models"}
# Two GPU pools and the upstream worker; each test adds what it looks at.
WORKERS: dict[str, Any] = {
    "upstream": {"apiKey": "k"},
    "workers": {
        "upstream": {"enabled": True},
        "gpu": {
            "pools": [
                {"name": "sdxl", "kind": "sdxl", "weights": CLAIMED},
                {"name": "sd15", "kind": "sd15", "weights": CLAIMED},
            ]
        },
    },
}


def with_workers(**workers: Any) -> dict[str, Any]:
    """WORKERS with ``workers.upstream``/``workers.gpu`` keys merged in (pools replaced)."""
    values: dict[str, Any] = copy.deepcopy(WORKERS)
    for part in ("upstream", "gpu"):
        values["workers"][part].update(workers.get(part, {}))
    return values


def ci_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "ci" / name).read_text())
    return values


def main_container(workload: Manifest) -> dict[str, Any]:
    container: dict[str, Any] = workload["spec"]["template"]["spec"]["containers"][0]
    return container


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def workers_of(rendered: Rendered) -> list[Manifest]:
    return [d for d in rendered.of_kind("Deployment") if d["metadata"]["name"] != GATEWAY]


@pytest.mark.parametrize(
    "values", [WORKERS, {**WORKERS, "workers": {**WORKERS["workers"], "metricsPort": 9200}}]
)
def test_workers_are_probed_on_the_metrics_port_they_serve(values: dict[str, Any]) -> None:
    rendered = render(values)
    for worker in workers_of(rendered):
        container = main_container(worker)
        env = {e["name"]: e.get("value") for e in container["env"]}
        (port,) = [p for p in container["ports"] if p["name"] == "metrics"]
        assert env["SYNTHGATE_WORKER_METRICS_PORT"] == str(port["containerPort"])
        live, ready = container["livenessProbe"], container["readinessProbe"]
        assert live["httpGet"] == {"path": "/livez", "port": "metrics"}
        assert ready["httpGet"] == {"path": "/readyz", "port": "metrics"}
        if worker["metadata"]["name"] == UPSTREAM:
            assert "startupProbe" not in container
        else:
            # Model loading takes minutes: liveness waits until the pipelines are loaded.
            startup = container["startupProbe"]
            assert startup["httpGet"] == {"path": "/readyz", "port": "metrics"}
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_probe_timings_come_from_values_and_a_pool_can_change_or_drop_one() -> None:
    values = with_workers(
        upstream={"livenessProbe": {"failureThreshold": 8}},
        gpu={
            "livenessProbe": {"periodSeconds": 30},
            "pools": [
                {"name": "sdxl", "kind": "sdxl", "weights": CLAIMED},
                {
                    "name": "sd15",
                    "kind": "sd15",
                    "weights": CLAIMED,
                    "startupProbe": {"failureThreshold": 12},
                    "readinessProbe": {"enabled": False},
                },
            ],
        },
    )
    rendered = render(values)
    upstream = main_container(rendered.get("Deployment", UPSTREAM))
    assert upstream["livenessProbe"]["failureThreshold"] == 8
    assert upstream["livenessProbe"]["periodSeconds"] == 15  # the default, kept
    sdxl = main_container(rendered.get("Deployment", SDXL))
    sd15 = main_container(rendered.get("Deployment", SD15))
    assert sdxl["livenessProbe"]["periodSeconds"] == sd15["livenessProbe"]["periodSeconds"] == 30
    assert sd15["startupProbe"]["failureThreshold"] == 12
    assert sd15["startupProbe"]["periodSeconds"] == sdxl["startupProbe"]["periodSeconds"]
    assert "readinessProbe" in sdxl and "readinessProbe" not in sd15
    off = render(with_workers(upstream={"livenessProbe": {"enabled": False}}))
    assert "livenessProbe" not in main_container(off.get("Deployment", UPSTREAM))


def test_each_worker_pool_has_a_disruption_budget_that_selects_only_its_pods() -> None:
    rendered = render(ci_values("gpu-keda-values.yaml"))
    budgets = {b["metadata"]["name"]: b["spec"] for b in rendered.of_kind("PodDisruptionBudget")}
    assert set(budgets) == {GATEWAY, UPSTREAM, SDXL, SD15}
    for worker in workers_of(rendered):
        name = worker["metadata"]["name"]
        selecting = [
            b
            for b, spec in budgets.items()
            if selects(spec["selector"]["matchLabels"], pod_labels(worker))
        ]
        assert selecting == [name]
    # A drain takes a pool's pods a few at a time: the sdxl pool allows two (its own value).
    assert budgets[SDXL] == {**budgets[SDXL], "maxUnavailable": 2}
    assert budgets[SD15]["maxUnavailable"] == budgets[UPSTREAM]["maxUnavailable"] == 1
    assert all("minAvailable" not in budgets[n] for n in (SDXL, SD15, UPSTREAM))


def test_a_disruption_budget_can_keep_a_minimum_up_or_be_turned_off() -> None:
    values = with_workers(
        upstream={"pdb": {"enabled": False}},
        gpu={"pdb": {"minAvailable": "50%"}},
    )
    rendered = render(values)
    assert rendered.names("PodDisruptionBudget") == {GATEWAY, SDXL, SD15}
    spec = rendered.get("PodDisruptionBudget", SD15)["spec"]
    assert spec["minAvailable"] == "50%" and "maxUnavailable" not in spec


def test_worker_pods_spread_softly_over_nodes_and_zones_unless_a_pool_says_otherwise() -> None:
    rendered = render(ci_values("gpu-keda-values.yaml"))
    for name in (SDXL, UPSTREAM):
        worker = rendered.get("Deployment", name)
        constraints = worker["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert [(c["topologyKey"], c["whenUnsatisfiable"]) for c in constraints] == [
            ("kubernetes.io/hostname", "ScheduleAnyway"),
            ("topology.kubernetes.io/zone", "ScheduleAnyway"),
        ]
        for constraint in constraints:
            # Each counts the pool's own pods, not every worker of the release.
            assert (
                constraint["labelSelector"]["matchLabels"]
                == worker["spec"]["selector"]["matchLabels"]
            )
    # The sd15 pool's own list replaces the shared one.
    sd15 = rendered.get("Deployment", SD15)["spec"]["template"]["spec"]
    (constraint,) = sd15["topologySpreadConstraints"]
    assert (constraint["topologyKey"], constraint["whenUnsatisfiable"]) == (
        "kubernetes.io/hostname",
        "DoNotSchedule",
    )
    assert constraint["labelSelector"]["matchLabels"]["synthgate.io/pool"] == "sd15"
    none = render(with_workers(gpu={"topologySpreadConstraints": []}))
    assert (
        "topologySpreadConstraints" not in none.get("Deployment", SDXL)["spec"]["template"]["spec"]
    )


def test_global_registry_and_pull_secrets_reach_every_pod() -> None:
    values = {
        **WORKERS,
        "redis": {"enabled": True},
        "global": {
            "imageRegistry": "registry.example.com",
            "imagePullSecrets": ["regcred", {"name": "mirror"}],
        },
        "imagePullSecrets": [{"name": "regcred"}, {"name": "chart-only"}],
    }
    rendered = render(values)
    images = set()
    for workload in [d for d in rendered.documents if d["kind"] in POD_KINDS]:
        spec = workload["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [
            {"name": "regcred"},
            {"name": "mirror"},
            {"name": "chart-only"},
        ]
        images |= {c["image"] for c in spec["containers"] + spec.get("initContainers", [])}
    # A repository naming a registry (docker.io/...) has it replaced; others get it in front.
    assert images == {
        "registry.example.com/synthgate:0.1.0",
        "registry.example.com/synthgate-gpu:0.1.0",
        "registry.example.com/library/redis:7.2.7-alpine",
    }


def test_common_labels_mark_every_object_and_pod_labels_every_pod_but_no_selector() -> None:
    values = {
        **WORKERS,
        "redis": {"enabled": True},
        "metrics": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True}},
        "networkPolicy": {"enabled": True},
        "commonLabels": {"team": "imaging"},
        "podLabels": {"cost-center": "gpu"},
    }
    rendered = render(values)
    for document in rendered.documents:
        assert document["metadata"]["labels"]["team"] == "imaging", document["metadata"]["name"]
        if document["kind"] in POD_KINDS:
            assert pod_labels(document)["cost-center"] == "gpu"
            assert pod_labels(document)["team"] == "imaging"
            assert "cost-center" not in document["spec"]["selector"]["matchLabels"]
            assert "team" not in document["spec"]["selector"]["matchLabels"]
        else:
            assert "cost-center" not in document["metadata"]["labels"]


def test_extra_volumes_are_mounted_in_the_gateway_and_every_worker() -> None:
    rendered = render(ci_values("production-values.yaml"))
    for workload in rendered.of_kind("Deployment"):
        spec = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["corporate-ca"] == {
            "name": "corporate-ca",
            "configMap": {"name": "corporate-ca-bundle"},
        }
        mounts = {m["name"]: m for m in main_container(workload)["volumeMounts"]}
        assert mounts["corporate-ca"]["mountPath"] == "/etc/ssl/corporate"


def test_the_ingress_routes_each_host_to_the_public_api_only() -> None:
    rendered = render(ci_values("production-values.yaml"))
    ingress = rendered.get("Ingress", GATEWAY)["spec"]
    hosts = ["imagegen.example.com", "imagegen.internal.example.com"]
    assert [rule["host"] for rule in ingress["rules"]] == hosts
    assert ingress["tls"] == [{"hosts": hosts, "secretName": "imagegen-tls"}]
    for rule in ingress["rules"]:
        # Never /metrics (it names tenants), /admin/v1, /healthz or /readyz.
        assert [p["path"] for p in rule["http"]["paths"]] == ["/api/v1", "/v1", "/files"]
    config = rendered.get("ConfigMap", "sg-synthgate-config")["data"]
    assert config["SYNTHGATE_PUBLIC_URL"] == "https://imagegen.example.com"


def test_the_single_host_of_earlier_values_still_routes() -> None:
    values = {"gateway": {"ingress": {"enabled": True, "host": "img.example.com"}}}
    (rule,) = render(values).get("Ingress", GATEWAY)["spec"]["rules"]
    assert rule["host"] == "img.example.com"


def test_the_gateway_admits_in_cluster_callers_by_namespace_and_pod_selectors() -> None:
    rendered = render(ci_values("production-values.yaml"))
    policy = rendered.get("NetworkPolicy", GATEWAY)["spec"]
    peers = [rule["from"] for rule in policy["ingress"]]
    callers = ci_values("production-values.yaml")["networkPolicy"]["clientsFrom"]
    assert callers in peers
    rule = policy["ingress"][peers.index(callers)]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    # Without callers no rule is added: the ingress controller alone (and no scrape here).
    plain = render({"networkPolicy": {"enabled": True}}).get("NetworkPolicy", GATEWAY)["spec"]
    assert len(plain["ingress"]) == 1


def test_the_chart_renders_as_a_subchart_with_the_parents_globals(tmp_path: Path) -> None:
    parent = tmp_path / "platform"
    shutil.copytree(CHART_DIR, parent / "charts" / "synthgate")
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform",
                "version": "1.0.0",
                "dependencies": [{"name": "synthgate", "version": "0.1.0"}],
            }
        )
    )
    values = {
        # The parent's own globals ride along; the subchart's schema must let them through.
        "global": {
            "imageRegistry": "registry.example.com",
            "imagePullSecrets": ["regcred"],
            "domain": "x",
        },
        "synthgate": {"commonLabels": {"team": "imaging"}},
    }
    chart = helm_python.Chart.load(parent)
    rendered = parse_rendered(
        chart.render(values, name="platform", namespace="apps", is_install=True)
    )
    gateway = rendered.get("Deployment", "platform-synthgate-gateway")
    spec = gateway["spec"]["template"]["spec"]
    assert main_container(gateway)["image"] == "registry.example.com/synthgate:0.1.0"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert gateway["metadata"]["labels"]["team"] == "imaging"
