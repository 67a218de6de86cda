"""What the rendered chart does: probes, GPUs, autoscaling, secrets, network, monitoring."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from chart_manifests import (
    CHART_DIR,
    FINE_TUNE,
    GPU_TOLERATION,
    KUBE_VERSIONS,
    NAMESPACE,
    SENTINELS,
    VALUE_SETS,
    WANX_V1,
    Manifest,
    Rendered,
    loaded_chart,
    render,
    validate_manifest,
)

from taskcore.catalog import load_catalog
from taskcore.redis_keys import backlog
from taskcore.settings import Settings
from workers.runtime import served_queues

GATEWAY = "sg-synthgate-gateway"
UPSTREAM = "sg-synthgate-worker-upstream"
CHART_SECRET = "sg-synthgate-secrets"
CONFIG = "sg-synthgate-config"
CATALOG = "sg-synthgate-catalog"
CATALOG_FILE = "/etc/synthgate/catalog/models.json"
SECRET_ENV = {
    "SYNTHGATE_REDIS_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "SYNTHGATE_UPSTREAM_API_KEY",
    "SYNTHGATE_ADMIN_TOKEN",
    "HF_TOKEN",
}
# The variables holding upstream.accounts' keys, each from a Secret, and the accounts' JSON,
# which either comes from a Secret whole or refers to those variables as $(NAME).
ACCOUNT_KEY_ENV = re.compile(r"^SYNTHGATE_UPSTREAM_ACCOUNT_KEY_\d+$")
ACCOUNTS_ENV = "SYNTHGATE_UPSTREAM_ACCOUNTS"
UPSTREAM_ENV = {"SYNTHGATE_UPSTREAM_API_KEY", ACCOUNTS_ENV}
WORKLOADS = ("Deployment", "StatefulSet")
# Every upstream pool of the built-in catalog: each upstream model is a pool of its own.
BUILTIN_UPSTREAM_POOLS = list(load_catalog().upstream_pools())


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Manifest, name: str | None = None) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    return next(c for c in containers if name is None or c["name"] == name)


def env(container_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container_spec.get("env", [])}


def secret_ref(container_spec: dict[str, Any], name: str) -> tuple[str, str]:
    ref = env(container_spec)[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def triggered_pools(scaled_object: Manifest) -> list[str]:
    """The pools a ScaledObject watches, checking each has a trigger on its queue and one
    on its backlog list, in that order."""
    lists = [t["metadata"]["listName"] for t in scaled_object["spec"]["triggers"]]
    pools = lists[::2]
    assert lists == [name for pool in pools for name in (pool, backlog(pool))]
    return pools


def expand(container_spec: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's ``env`` (not its envFrom) as the kubelet makes it: each secretKeyRef
    read from ``secrets`` (name -> data), and $(NAME) in a value replaced by the variable
    defined before it."""
    out: dict[str, str] = {}
    for entry in container_spec.get("env", []):
        if "value" in entry:
            out[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: out.get(m[1], m[0]), entry["value"]
            )
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            out[entry["name"]] = secrets[ref["name"]][ref["key"]]
    return out


def app_settings(
    rendered: Rendered,
    workload: str,
    secrets: dict[str, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """The settings the application reads in ``workload``'s main container: the ConfigMap,
    the catalog file where the pod mounts it, and the secret environment."""
    for name in [n for n in os.environ if n.startswith("SYNTHGATE_")]:
        monkeypatch.delenv(name)
    main = container(rendered.get("Deployment", workload))
    environment = dict(rendered.get("ConfigMap", CONFIG)["data"])
    environment.update(expand(main, secrets))
    if "SYNTHGATE_MODEL_CATALOG" in environment:
        mount = next(m for m in main["volumeMounts"] if m["name"] == "catalog")
        volume = next(
            v
            for v in pod_spec(rendered.get("Deployment", workload))["volumes"]
            if v["name"] == "catalog"
        )
        catalog = rendered.get("ConfigMap", volume["configMap"]["name"])["data"]
        relative = Path(environment["SYNTHGATE_MODEL_CATALOG"]).relative_to(mount["mountPath"])
        local = tmp_path / workload / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(catalog[str(relative)])
        environment["SYNTHGATE_MODEL_CATALOG"] = str(local)
    for name, value in environment.items():
        if name.startswith("SYNTHGATE_"):
            monkeypatch.setenv(name, value)
    return Settings.from_env()


SET_NAMES = sorted(VALUE_SETS)


@pytest.fixture(scope="module")
def sets() -> dict[str, Rendered]:
    return {name: render(values) for name, values in VALUE_SETS.items()}


def test_default_values_give_a_gateway_and_one_sdxl_gpu_pool(sets: dict[str, Rendered]) -> None:
    rendered = sets["default"]
    assert rendered.names("Deployment") == {GATEWAY, "sg-synthgate-worker-gpu-sdxl"}
    assert {"Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= rendered.kinds()
    for optional in ("Ingress", "NetworkPolicy", "ScaledObject", "ServiceMonitor", "StatefulSet"):
        assert optional not in rendered.kinds()
    # Redis and S3 are external endpoints by default.
    assert rendered.secret_data(CHART_SECRET) == {"redis-url": "redis://redis:6379/0"}
    config = rendered.get("ConfigMap", CONFIG)["data"]
    assert config["SYNTHGATE_STORAGE"] == "s3"
    assert config["SYNTHGATE_S3_BUCKET"] == "synthgate"


def test_gateway_probes_hit_healthz_and_readyz_on_the_port_it_binds(
    sets: dict[str, Rendered],
) -> None:
    gateway = container(sets["default"].get("Deployment", GATEWAY))
    variables = env(gateway)
    assert gateway["args"] == ["serve"]
    assert variables["SYNTHGATE_HOST"]["value"] == "0.0.0.0"
    assert gateway["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert variables["SYNTHGATE_PORT"]["value"] == "8000"
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Without the workers check: an idle pool scaled to zero must not take the gateway out.
    probe = {"path": "/readyz?exclude=workers", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == probe
    service = sets["default"].get("Service", GATEWAY)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = sets["default"].get("Deployment", GATEWAY)["spec"]["template"]["metadata"]
    assert matches(service["spec"]["selector"], pod_labels["labels"])


def test_gateway_replicas_belong_to_the_hpa_and_the_pdb_keeps_one_up(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["default"]
    deployment = rendered.get("Deployment", GATEWAY)
    assert "replicas" not in deployment["spec"]  # a rollout must not reset the HPA's count
    hpa = rendered.get("HorizontalPodAutoscaler", GATEWAY)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    pdb = rendered.get("PodDisruptionBudget", GATEWAY)["spec"]
    assert pdb["minAvailable"] == 1
    assert matches(
        pdb["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]
    )

    fixed = render({"gateway": {"hpa": {"enabled": False}, "replicas": 3}})
    assert fixed.get("Deployment", GATEWAY)["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in fixed.kinds()


def test_gateway_drains_requests_in_flight_within_its_grace_period(
    sets: dict[str, Rendered],
) -> None:
    deployment = sets["default"].get("Deployment", GATEWAY)
    gateway = container(deployment)
    pause = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert pause == ["sleep", "5"]  # the load balancer stops sending new requests first
    drain = int(env(gateway)["SYNTHGATE_SHUTDOWN_TIMEOUT_SECONDS"]["value"])
    assert drain == 20
    assert int(pause[1]) + drain < pod_spec(deployment)["terminationGracePeriodSeconds"]


def test_the_gateway_serves_the_console_unless_the_values_turn_it_off(
    sets: dict[str, Rendered],
) -> None:
    gateway = container(sets["default"].get("Deployment", GATEWAY))
    assert env(gateway)["SYNTHGATE_CONSOLE_ENABLED"]["value"] == "true"
    off = render({"gateway": {"console": {"enabled": False}}})
    gateway = container(off.get("Deployment", GATEWAY))
    assert env(gateway)["SYNTHGATE_CONSOLE_ENABLED"]["value"] == "false"


def test_gpu_pool_pods_get_one_gpu_one_process_and_a_grace_period_longer_than_a_task(
    sets: dict[str, Rendered],
) -> None:
    deployment = sets["default"].get("Deployment", "sg-synthgate-worker-gpu-sdxl")
    spec = pod_spec(deployment)
    worker = container(deployment, "worker")
    variables = env(worker)
    assert worker["image"] == "synthgate-gpu:0.1.0"
    assert worker["args"] == ["worker"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert variables["SYNTHGATE_WORKER_QUEUES"]["value"] == "gpu.sdxl"
    assert variables["SYNTHGATE_WORKER_CONCURRENCY"]["value"] == "1"
    assert variables["SYNTHGATE_DEVICE"]["value"] == "cuda"
    assert variables["SYNTHGATE_SDXL_WEIGHTS_DIR"]["value"] == "/models"
    assert GPU_TOLERATION in spec["tolerations"]
    visibility = int(
        sets["default"].get("ConfigMap", CONFIG)["data"]["SYNTHGATE_VISIBILITY_TIMEOUT_SECONDS"]
    )
    assert 600 < spec["terminationGracePeriodSeconds"] < visibility
    # A surge pod would wait for a free GPU: replace pods one at a time instead.
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    # Restarted when its consumer loop or lease renewal stalls, not merely when it exits.
    assert worker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}


def test_two_gpu_pools_each_get_a_deployment_and_a_scaled_object_on_their_queue(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["gpu-pools-keda"]
    sdxl = rendered.get("Deployment", "sg-synthgate-worker-gpu-sdxl")
    sd15 = rendered.get("Deployment", "sg-synthgate-worker-gpu-sd15")
    assert sdxl["spec"]["selector"] != sd15["spec"]["selector"]
    assert container(sdxl)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container(sd15)["resources"]["limits"] == {
        "memory": "32Gi",
        "nvidia.com/mig-3g.40gb": 1,
    }
    assert pod_spec(sdxl)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    assert pod_spec(sdxl)["terminationGracePeriodSeconds"] == 1200
    assert pod_spec(sd15)["terminationGracePeriodSeconds"] == 1800

    # The upstream worker consumes every upstream pool (`upstream`): one per upstream model
    # of the built-in catalog, and stable-diffusion-xl's, which config.routes sends both ways.
    upstream_pools = sorted([*BUILTIN_UPSTREAM_POOLS, "upstream.stable-diffusion-xl"])
    for name, queue, pools, max_replicas, list_length in (
        ("sg-synthgate-worker-gpu-sdxl", "gpu.sdxl", ["gpu.sdxl"], 8, "2"),
        ("sg-synthgate-worker-gpu-sd15", "gpu.sd15", ["gpu.sd15"], 2, "4"),
        (UPSTREAM, "upstream", upstream_pools, 10, "20"),
    ):
        deployment = rendered.get("Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: KEDA owns the replica count"
        scaled = rendered.get("ScaledObject", name)["spec"]
        assert scaled["scaleTargetRef"]["name"] == name
        assert scaled["maxReplicaCount"] == max_replicas
        # Waiting tasks are in each pool's Celery queue and in its fair-queue backlog list.
        assert [t["metadata"]["listName"] for t in scaled["triggers"]] == [
            listed for pool in pools for listed in (pool, backlog(pool))
        ]
        for trigger in scaled["triggers"]:
            assert trigger["type"] == "redis"
            assert trigger["metadata"] == {
                "address": "redis.data.svc.cluster.local:6380",
                "listName": trigger["metadata"]["listName"],
                "listLength": list_length,
                "activationListLength": "0",
                "databaseIndex": "2",
                "enableTLS": "true",
            }
            assert trigger["authenticationRef"] == scaled["triggers"][0]["authenticationRef"]
        assert env(container(deployment))["SYNTHGATE_WORKER_QUEUES"]["value"] == queue
        auth = rendered.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
        refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
        assert set(refs) == {"password", "username"}
        secret = rendered.secret_data(refs["password"]["name"])
        assert secret[refs["password"]["key"]] == SENTINELS["redis"]
        assert secret[refs["username"]["key"]] == "default"


def test_gpu_pools_can_be_recreated_instead_of_rolled(sets: dict[str, Rendered]) -> None:
    deployment = sets["all-options"].get("Deployment", "imagegen-worker-gpu-sdxl")
    # Helm merges values maps: the default rollingUpdate must not survive next to Recreate.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_keda_reaches_a_bare_host_or_the_bundled_redis_by_its_namespaced_name(
    sets: dict[str, Rendered],
) -> None:
    bare = render({"workers": {"gpu": {"keda": {"enabled": True}}}})
    for trigger in bare.get("ScaledObject", "sg-synthgate-worker-gpu-sdxl")["spec"]["triggers"]:
        assert trigger["metadata"]["address"] == f"redis.{NAMESPACE}.svc:6379"
        assert "authenticationRef" not in trigger  # no password in the URL
    bundled = sets["bundled-redis-local-storage"]
    for trigger in bundled.get("ScaledObject", "sg-synthgate-worker-gpu-sdxl")["spec"]["triggers"]:
        assert trigger["metadata"]["address"] == f"sg-synthgate-redis.{NAMESPACE}.svc:6379"


def test_pool_weights_come_from_a_read_only_claim_or_an_init_download(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["gpu-pools-keda"]
    sdxl = rendered.get("Deployment", "sg-synthgate-worker-gpu-sdxl")
    assert "initContainers" not in pod_spec(sdxl)
    volumes = {v["name"]: v for v in pod_spec(sdxl)["volumes"]}
    assert volumes["weights"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert env(container(sdxl))["SYNTHGATE_SDXL_WEIGHTS_DIR"]["value"] == "/models/sdxl-base-1.0"
    mounts = {m["name"]: m for m in container(sdxl)["volumeMounts"]}
    assert mounts["weights"] == {"name": "weights", "mountPath": "/models", "readOnly": True}

    sd15 = rendered.get("Deployment", "sg-synthgate-worker-gpu-sd15")
    (fetch,) = pod_spec(sd15)["initContainers"]
    fetch_env = env(fetch)
    assert fetch["command"] == ["python", "/opt/synthgate/fetch-weights.py"]
    assert fetch_env["WEIGHTS_DIR"]["value"] == "/models"
    assert fetch_env["HF_REPO_ID"]["value"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert fetch_env["HF_ENDPOINT"]["value"] == "https://hf-mirror.internal"
    assert secret_ref(fetch, "HF_TOKEN") == ("hf-token", "token")
    assert "HF_TOKEN" not in env(container(sd15, "worker"))
    assert env(container(sd15))["SYNTHGATE_SD15_WEIGHTS_DIR"]["value"] == "/models"
    volumes = {v["name"]: v for v in pod_spec(sd15)["volumes"]}
    assert volumes["weights"]["emptyDir"] == {"sizeLimit": "10Gi"}
    script = rendered.get("ConfigMap", volumes["fetch-weights"]["configMap"]["name"])
    expected = (CHART_DIR / "files" / "fetch-weights.py").read_text()
    assert script["data"]["fetch-weights.py"].strip() == expected.strip()


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_secret_settings_reach_containers_only_through_secret_key_refs(set_name: str) -> None:
    rendered = render(VALUE_SETS[set_name])
    for workload in rendered.documents:
        if workload["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(workload)
        for item in spec["containers"] + spec.get("initContainers", []):
            variables = env(item)
            where = f"{workload['metadata']['name']}/{item['name']}"
            keys = {name for name in variables if ACCOUNT_KEY_ENV.match(name)}
            for name in (SECRET_ENV | keys) & set(variables):
                assert "value" not in variables[name], f"{where}: {name}"
                assert "secretKeyRef" in variables[name]["valueFrom"]
            if ACCOUNTS_ENV not in variables:
                assert not keys, where
                continue
            accounts = variables[ACCOUNTS_ENV]
            if "valueFrom" in accounts:  # the JSON whole, keys included, from a Secret
                assert "secretKeyRef" in accounts["valueFrom"], where
                assert not keys, where
                continue
            # Built by the chart: each key a $(reference) to a secret variable set before it.
            defined_before = [entry["name"] for entry in item["env"]]
            defined_before = defined_before[: defined_before.index(ACCOUNTS_ENV)]
            references = [account["api_key"] for account in json.loads(accounts["value"])]
            in_order = sorted(keys, key=lambda name: int(name.rpartition("_")[2]))
            assert references == [f"$({name})" for name in in_order], where
            assert keys <= set(defined_before), where


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_no_secret_value_appears_outside_the_secret(set_name: str) -> None:
    rendered = render(VALUE_SETS[set_name])
    for doc in rendered.documents:
        if doc["kind"] == "Secret":
            continue
        text = str(doc)
        for sentinel in SENTINELS.values():
            assert sentinel not in text, f"{doc['kind']} {doc['metadata']['name']}"
    assert not any(sentinel in rendered.notes for sentinel in SENTINELS.values())


def test_each_component_gets_only_the_secrets_it_needs(sets: dict[str, Rendered]) -> None:
    rendered = sets["gpu-pools-keda"]
    gateway = set(env(container(rendered.get("Deployment", GATEWAY))))
    upstream = set(env(container(rendered.get("Deployment", UPSTREAM))))
    gpu = set(env(container(rendered.get("Deployment", "sg-synthgate-worker-gpu-sdxl"))))
    shared = {"SYNTHGATE_REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    # The gateway needs the account too, to know that upstream models can be served; it
    # never calls DashScope. The GPU workers get no upstream credentials.
    assert gateway & SECRET_ENV == shared | {"SYNTHGATE_ADMIN_TOKEN", "SYNTHGATE_UPSTREAM_API_KEY"}
    assert upstream & SECRET_ENV == shared | {"SYNTHGATE_UPSTREAM_API_KEY"}
    assert gpu & SECRET_ENV == shared
    assert rendered.secret_data(CHART_SECRET)["upstream-api-key"] == SENTINELS["upstream"]
    # Without an upstream worker nothing would run an upstream task: the gateway gets no
    # account, and answers upstream-only models 400 instead of queueing them forever.
    no_worker = render({"upstream": {"apiKey": SENTINELS["upstream"]}})
    gateway = set(env(container(no_worker.get("Deployment", GATEWAY))))
    assert not gateway & UPSTREAM_ENV
    config = rendered.get("ConfigMap", CONFIG)["data"]
    assert config["SYNTHGATE_ROUTES"] == '{"stable-diffusion-xl":"both"}'
    assert config["SYNTHGATE_S3_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert config["SYNTHGATE_S3_PUBLIC_ENDPOINT_URL"] == "https://images.example.com"
    assert config["SYNTHGATE_S3_ADDRESSING_STYLE"] == "path"


def test_existing_secrets_are_referenced_and_not_recreated(sets: dict[str, Rendered]) -> None:
    rendered = sets["existing-secrets-ingress-netpol"]
    assert "Secret" not in rendered.kinds()
    gateway = container(rendered.get("Deployment", GATEWAY))
    upstream = container(rendered.get("Deployment", UPSTREAM))
    assert secret_ref(gateway, "SYNTHGATE_REDIS_URL") == ("synthgate-redis", "url")
    assert secret_ref(gateway, "SYNTHGATE_ADMIN_TOKEN") == ("synthgate-admin", "admin-token")
    assert secret_ref(upstream, "SYNTHGATE_UPSTREAM_API_KEY") == ("synthgate-upstream", "key")
    assert secret_ref(gateway, "SYNTHGATE_UPSTREAM_API_KEY") == ("synthgate-upstream", "key")
    assert secret_ref(upstream, "AWS_ACCESS_KEY_ID") == ("synthgate-s3", "aws-access-key-id")
    assert secret_ref(upstream, "AWS_SECRET_ACCESS_KEY") == (
        "synthgate-s3",
        "aws-secret-access-key",
    )
    (auth,) = rendered.of_kind("TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "synthgate-redis", "key": "password"}
    ]


def test_upstream_only_runs_no_gpu_pool_and_routes_every_model_upstream(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["upstream-only"]
    assert rendered.names("Deployment") == {GATEWAY, UPSTREAM}
    upstream = rendered.get("Deployment", UPSTREAM)
    worker = container(upstream)
    assert worker["image"] == "synthgate:0.1.0"  # the image without torch
    assert upstream["spec"]["replicas"] == 2
    assert env(worker)["SYNTHGATE_WORKER_QUEUES"]["value"] == "upstream"
    assert "nvidia.com/gpu" not in str(upstream)
    # It lets tasks finish for graceSeconds, then hands the rest back, before it is killed.
    assert env(worker)["SYNTHGATE_WORKER_GRACE_SECONDS"]["value"] == "60"
    assert env(worker)["SYNTHGATE_UPSTREAM_MAX_INFLIGHT"]["value"] == "256"
    assert pod_spec(upstream)["terminationGracePeriodSeconds"] == 90
    config = rendered.get("ConfigMap", CONFIG)["data"]
    assert (config["SYNTHGATE_LEASE_SECONDS"], config["SYNTHGATE_MAX_ATTEMPTS"]) == ("20", "3")
    routes = rendered.get("ConfigMap", CONFIG)["data"]["SYNTHGATE_ROUTES"]
    assert routes == '{"stable-diffusion-v1.5":"upstream","stable-diffusion-xl":"upstream"}'


def test_the_charts_builtin_models_are_the_applications() -> None:
    # The chart knows the built-in catalog's upstream pools from this file: a model added
    # to taskcore/models.yaml must be added there too, or KEDA would not watch its pool.
    listed = yaml.safe_load((CHART_DIR / "files" / "builtin-models.yaml").read_text())
    expected = {
        spec.name: {"runs": spec.runs, **({"family": spec.family} if spec.family else {})}
        for spec in load_catalog().models.values()
    }
    assert listed == expected


# The keys the operator's own Secrets hold in the value sets.
EXISTING_SECRETS = {"dashscope-keys": {"team-b": "sk-team-b"}}


def test_catalog_values_become_a_file_every_pod_mounts_and_the_application_loads(
    sets: dict[str, Rendered], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = sets["accounts-catalog"]
    catalog = rendered.get("ConfigMap", CATALOG)["data"]
    assert json.loads(catalog["models.json"]) == {"models": [FINE_TUNE, WANX_V1]}
    assert rendered.get("ConfigMap", CONFIG)["data"]["SYNTHGATE_MODEL_CATALOG"] == CATALOG_FILE
    deployments = rendered.of_kind("Deployment")
    assert len(deployments) == 4  # the gateway, the upstream worker and two GPU pools
    for deployment in deployments:
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert volumes["catalog"]["configMap"] == {"name": CATALOG}
        mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
        assert mounts["catalog"]["readOnly"] is True
        assert Path(CATALOG_FILE).parent == Path(mounts["catalog"]["mountPath"])

    secrets = {CHART_SECRET: rendered.secret_data(CHART_SECRET), **EXISTING_SECRETS}
    settings = app_settings(rendered, GATEWAY, secrets, tmp_path, monkeypatch)
    fine_tune = settings.catalog["acme-sdxl"]
    assert (fine_tune.runs, fine_tune.family, fine_tune.pool) == ("local", "sdxl", "gpu.acme")
    assert fine_tune.scale is not None and fine_tune.scale.default == 7.5
    assert settings.catalog["wanx-v1"].negative_prompt is None  # the operator's entry won
    assert settings.catalog["wanx-v1"].seed is not None
    assert settings.catalog["wanx-v1"].seed.high == 4294967290
    assert settings.catalog["stable-diffusion-v1.5"].runs == "upstream"  # config.routes
    # The fine-tune's pool is a GPU pool of its own, with its own weights.
    acme = container(rendered.get("Deployment", "sg-synthgate-worker-gpu-acme"))
    assert env(acme)["SYNTHGATE_WORKER_QUEUES"]["value"] == "gpu.acme"
    assert env(acme)["SYNTHGATE_SDXL_WEIGHTS_DIR"]["value"] == "/models/acme-sdxl"

    # Without catalog values the application's built-in catalog is all there is.
    default = sets["default"]
    assert CATALOG not in default.names("ConfigMap")
    assert "SYNTHGATE_MODEL_CATALOG" not in default.get("ConfigMap", CONFIG)["data"]
    for deployment in default.of_kind("Deployment"):
        assert "catalog" not in {v["name"] for v in pod_spec(deployment)["volumes"]}


def test_upstream_accounts_reach_the_gateway_and_the_upstream_worker_from_secrets(
    sets: dict[str, Rendered], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = sets["accounts-catalog"]
    chart_secret = rendered.secret_data(CHART_SECRET)
    assert chart_secret["upstream-account-main"] == SENTINELS["account"]
    assert "upstream-api-key" not in chart_secret
    assert not any("team-b" in key for key in chart_secret)  # its key is the operator's
    secrets = {CHART_SECRET: chart_secret, **EXISTING_SECRETS}
    for workload in (GATEWAY, UPSTREAM):
        main = container(rendered.get("Deployment", workload))
        assert "SYNTHGATE_UPSTREAM_API_KEY" not in env(main)
        assert secret_ref(main, "SYNTHGATE_UPSTREAM_ACCOUNT_KEY_0") == (
            CHART_SECRET,
            "upstream-account-main",
        )
        # existingSecretKey defaults to the account's name.
        assert secret_ref(main, "SYNTHGATE_UPSTREAM_ACCOUNT_KEY_1") == ("dashscope-keys", "team-b")
        accounts = app_settings(rendered, workload, secrets, tmp_path, monkeypatch).accounts()
        assert [
            (
                a.name,
                a.api_key.get_secret_value(),
                a.submit_per_second,
                a.max_running,
                a.max_running_by_model,
                a.models,
            )
            for a in accounts
        ] == [
            ("main", SENTINELS["account"], 2, 2, {"wanx-v1": 1, "wan2.5-t2i-preview": 5}, ()),
            (
                "team-b",
                "sk-team-b",
                0.5,
                2,  # the application's default
                {},
                ("wanx2.1-t2i-turbo", "qwen-image", "stable-diffusion-v1.5"),
            ),
        ]
    for name in ("sg-synthgate-worker-gpu-sdxl", "sg-synthgate-worker-gpu-acme"):
        variables = set(env(container(rendered.get("Deployment", name))))
        assert not variables & UPSTREAM_ENV
        assert not any(ACCOUNT_KEY_ENV.match(variable) for variable in variables)

    # Or a Secret of the operator's holds the JSON list whole.
    whole = sets["all-options"]
    for workload in ("imagegen-gateway", "imagegen-worker-upstream"):
        main = container(whole.get("Deployment", workload))
        assert secret_ref(main, ACCOUNTS_ENV) == ("dashscope-accounts", "accounts.json")
        assert not any(ACCOUNT_KEY_ENV.match(name) for name in env(main))
        assert "SYNTHGATE_UPSTREAM_API_KEY" not in env(main)
    assert not any(key.startswith("upstream") for key in whole.secret_data("imagegen-secrets"))


def test_upstream_keda_triggers_watch_the_pools_the_worker_consumes(
    sets: dict[str, Rendered], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `queue: upstream`: every model that runs upstream or both is a pool of its own, and
    # the worker consumes each (the application's served_queues, from the same settings).
    rendered = sets["accounts-catalog"]
    secrets = {CHART_SECRET: rendered.secret_data(CHART_SECRET), **EXISTING_SECRETS}
    settings = app_settings(rendered, UPSTREAM, secrets, tmp_path, monkeypatch)
    scaled = rendered.get("ScaledObject", UPSTREAM)
    pools = triggered_pools(scaled)
    assert pools == served_queues(settings) == list(settings.catalog.upstream_pools())
    assert pools == sorted([*BUILTIN_UPSTREAM_POOLS, "upstream.stable-diffusion-v1.5"])
    assert "upstream.acme-sdxl" not in pools  # a local model
    assert scaled["spec"]["maxReplicaCount"] == 3

    # Named pools: the worker consumes those, and KEDA watches those alone.
    named = sets["all-options"]
    worker = container(named.get("Deployment", "imagegen-worker-upstream"))
    queues = env(worker)["SYNTHGATE_WORKER_QUEUES"]["value"]
    assert queues == "upstream.acme-sdxl, upstream.stable-diffusion-xl"
    assert triggered_pools(named.get("ScaledObject", "imagegen-worker-upstream")) == [
        "upstream.acme-sdxl",
        "upstream.stable-diffusion-xl",
    ]

    # A built-in upstream model the catalog makes local leaves the upstream pools.
    local_wanx = {**WANX_V1, "runs": "local", "family": "sdxl"}
    values = {
        "upstream": {"apiKey": "k"},
        "catalog": {"models": [local_wanx]},
        "workers": {"upstream": {"enabled": True, "keda": {"enabled": True}}},
    }
    pools = triggered_pools(render(values).get("ScaledObject", UPSTREAM))
    assert pools == [pool for pool in BUILTIN_UPSTREAM_POOLS if pool != "upstream.wanx-v1"]


def test_ingress_routes_the_public_host_to_the_gateway_and_sets_the_public_url(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["existing-secrets-ingress-netpol"]
    ingress = rendered.get("Ingress", GATEWAY)["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["imagegen.example.com"], "secretName": "imagegen-tls"}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "imagegen.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": GATEWAY, "port": {"name": "http"}}
    config = rendered.get("ConfigMap", CONFIG)["data"]
    assert config["SYNTHGATE_PUBLIC_URL"] == "https://imagegen.example.com"
    assert "https://imagegen.example.com/api/v1" in rendered.notes


def test_the_ingress_publishes_only_the_public_api_paths_by_default(
    sets: dict[str, Rendered],
) -> None:
    ingress = sets["existing-secrets-ingress-netpol"].get("Ingress", GATEWAY)["spec"]
    (rule,) = ingress["rules"]
    paths = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    # Not /metrics (it names tenants), /admin/v1, /healthz, /readyz or /openapi.json.
    assert paths == {("/api/v1", "Prefix"), ("/v1", "Prefix"), ("/files", "Prefix")}


def test_network_policies_admit_only_the_ingress_to_the_gateway_and_nothing_to_workers(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["existing-secrets-ingress-netpol"]
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered.of_kind("NetworkPolicy")}
    assert set(policies) == {GATEWAY, UPSTREAM, "sg-synthgate-worker-gpu"}
    gateway_rules = policies[GATEWAY]["ingress"]
    assert gateway_rules[0]["from"] == loaded_chart().values["networkPolicy"]["ingressFrom"]
    assert gateway_rules[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(gateway_rules) == 2  # and the metrics scrape, as a ServiceMonitor is enabled
    for name in (UPSTREAM, "sg-synthgate-worker-gpu"):
        assert policies[name]["policyTypes"] == ["Ingress"]
        assert policies[name]["ingress"] == []
    # Each policy selects the pods it is meant for.
    for deployment in rendered.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selecting = [
            n for n, p in policies.items() if matches(p["podSelector"]["matchLabels"], labels)
        ]
        assert len(selecting) == 1, deployment["metadata"]["name"]


def test_bundled_redis_keeps_an_append_only_file_and_never_evicts(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["bundled-redis-local-storage"]
    redis = rendered.get("StatefulSet", "sg-synthgate-redis")
    server = container(redis)
    args = " ".join(server["args"])
    assert "--appendonly yes" in args
    assert "--appendfsync everysec" in args
    assert "--maxmemory-policy noeviction" in args
    assert "--requirepass $(REDIS_PASSWORD)" in args
    assert secret_ref(server, "REDIS_PASSWORD") == (CHART_SECRET, "redis-password")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    url = rendered.secret_data(CHART_SECRET)["redis-url"]
    assert url == f"redis://:{SENTINELS['redis']}@sg-synthgate-redis:6379/0"
    policy = rendered.get("NetworkPolicy", "sg-synthgate-redis")["spec"]
    peers = policy["ingress"][0]["from"]
    assert {"app.kubernetes.io/instance": "sg"}.items() <= peers[0]["podSelector"][
        "matchLabels"
    ].items()
    # Local storage: one shared claim in every synthgate pod, at SYNTHGATE_STORAGE_DIR.
    config = rendered.get("ConfigMap", CONFIG)["data"]
    assert config["SYNTHGATE_STORAGE"] == "local"
    for deployment in rendered.of_kind("Deployment"):
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert volumes["storage"]["persistentVolumeClaim"]["claimName"] == "synthgate-images"
        mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
        assert mounts["storage"] == config["SYNTHGATE_STORAGE_DIR"]


def test_monitors_scrape_the_gateway_http_port_and_the_workers_metrics_port(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["gpu-pools-keda"]
    (endpoint,) = rendered.get("ServiceMonitor", GATEWAY)["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    monitor = rendered.get("PodMonitor", "sg-synthgate-workers")["spec"]
    assert monitor["podMetricsEndpoints"][0]["port"] == "metrics"
    (expression,) = monitor["selector"]["matchExpressions"]
    assert set(expression["values"]) == {"worker-upstream", "worker-gpu"}
    for deployment in rendered.of_kind("Deployment"):
        if deployment["metadata"]["name"] == GATEWAY:
            continue
        worker = container(deployment)
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in worker["ports"]
        assert env(worker)["SYNTHGATE_WORKER_METRICS_PORT"]["value"] == "9100"


def test_workers_serve_metrics_on_the_port_the_pod_monitor_scrapes(
    sets: dict[str, Rendered],
) -> None:
    rendered = sets["all-options"]  # workers.metricsPort: 9200
    workers = [
        deployment
        for deployment in rendered.of_kind("Deployment")
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"].startswith("worker-")
    ]
    assert len(workers) >= 2  # the upstream worker and the GPU pools
    for deployment in workers:
        worker = container(deployment)
        assert {"name": "metrics", "containerPort": 9200, "protocol": "TCP"} in worker["ports"]
        assert env(worker)["SYNTHGATE_WORKER_METRICS_PORT"]["value"] == "9200"


def test_pods_roll_when_settings_or_secrets_change() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, dict[str, str]]:
        rendered = render(values)
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]
            for d in rendered.of_kind("Deployment")
        }

    base = checksums({})
    settings = checksums({"config": {"logLevel": "DEBUG"}})
    secrets = checksums({"admin": {"token": "rotated-admin-token-0123456789abcdef"}})
    for name in base:
        assert base[name]["checksum/config"] != settings[name]["checksum/config"]
        assert base[name]["checksum/secret"] == settings[name]["checksum/secret"]
        assert base[name]["checksum/secret"] != secrets[name]["checksum/secret"]
        assert base[name]["checksum/catalog"] == settings[name]["checksum/catalog"]
    # The application reads its catalog file once, at start-up: a changed entry rolls the
    # gateway and every worker, and nothing else does.
    catalog = checksums({"catalog": {"models": [FINE_TUNE]}})
    edited = checksums({"catalog": {"models": [{**FINE_TUNE, "steps": {"min": 1, "max": 40}}]}})
    assert set(catalog) == set(edited) == set(base)
    for name in catalog:
        assert catalog[name]["checksum/catalog"] != edited[name]["checksum/catalog"]
        assert catalog[name]["checksum/config"] == edited[name]["checksum/config"]
        assert catalog[name]["checksum/secret"] == edited[name]["checksum/secret"]


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_every_pod_runs_as_non_root_with_a_read_only_root_filesystem(set_name: str) -> None:
    rendered = render(VALUE_SETS[set_name])
    for workload in rendered.documents:
        if workload["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for item in spec["containers"] + spec.get("initContainers", []):
            context = item["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert item["resources"], f"{item['name']} has no resources"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("set_name", SET_NAMES)
def test_every_manifest_is_valid_for_kubernetes(set_name: str, kube_version: str) -> None:
    rendered = render(VALUE_SETS[set_name])
    assert rendered.documents
    for manifest in rendered.documents:
        validate_manifest(manifest, kube_version)


def test_validation_is_strict_about_misspelt_fields(sets: dict[str, Rendered]) -> None:
    deployment = sets["default"].get("Deployment", GATEWAY)
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(Exception, match="replica"):
        validate_manifest(broken, KUBE_VERSIONS[-1])
    scaled = sets["gpu-pools-keda"].get("ScaledObject", UPSTREAM)
    trigger = {**scaled["spec"]["triggers"][0], "metadata": {"listLength": 5}}
    broken = {**scaled, "spec": {**scaled["spec"], "triggers": [trigger]}}
    with pytest.raises(Exception, match="is not of type 'string'"):
        validate_manifest(broken, KUBE_VERSIONS[-1])


@pytest.mark.parametrize("set_name", SET_NAMES)
def test_helm_lint_reports_nothing(set_name: str) -> None:
    report = helm_python.lint(CHART_DIR, VALUE_SETS[set_name], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); warnings and errors are findings.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
