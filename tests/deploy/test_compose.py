"""deploy/compose.yaml, read as YAML (no engine here): the one-host stack and its safety nets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskcore.catalog import load_catalog
from taskcore.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
SYNTHGATE = ("gateway", "worker-upstream", "worker-gpu")
WORKERS = ("worker-upstream", "worker-gpu")
UPSTREAM_SECRETS = ("SYNTHGATE_UPSTREAM_API_KEY", "SYNTHGATE_UPSTREAM_ACCOUNTS")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the <<: merge keys
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def unset(value: str) -> str:
    """What Compose makes of ``${NAME:-default}`` while NAME is empty or unset."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return match[1] if match else value


def test_the_stack_has_redis_minio_the_gateway_and_both_workers(
    services: dict[str, dict[str, Any]],
) -> None:
    by_default = {name for name, service in services.items() if "profiles" not in service}
    assert by_default == {"redis", "minio", "minio-bucket", *SYNTHGATE}
    assert services["gateway"]["command"] == ["serve"]
    for name in WORKERS:
        assert services[name]["command"] == ["worker"]
    assert services["worker-upstream"]["environment"]["SYNTHGATE_WORKER_QUEUES"] == "upstream"
    assert services["worker-gpu"]["environment"]["SYNTHGATE_WORKER_QUEUES"] == "gpu.sdxl"


def test_redis_keeps_an_append_only_file_and_never_evicts(
    services: dict[str, dict[str, Any]],
) -> None:
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert "--dir /data" in command
    assert "redis-data:/data" in redis["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis  # reachable only inside the compose network


def test_synthgate_containers_are_locked_down_and_wait_for_their_dependencies(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in SYNTHGATE:
        service = services[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name
        assert "user" not in service and "privileged" not in service, name
        assert service["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "minio-bucket": {"condition": "service_completed_successfully"},
        }, name
        assert service["environment"]["SYNTHGATE_REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["SYNTHGATE_STORAGE"] == "s3"
    assert services["minio-bucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}


def test_healthchecks_probe_what_each_service_serves(services: dict[str, dict[str, Any]]) -> None:
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    gateway_check = " ".join(services["gateway"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/readyz" in gateway_check
    for name in WORKERS:  # not the image's HEALTHCHECK (the gateway's, or none)
        check = services[name]["healthcheck"]
        assert check["test"][:3] == ["CMD", "python", "-c"]  # neither image has curl
        assert "/livez" in check["test"][3]
    # Loading the pipelines takes minutes: the GPU worker's failures then do not count.
    assert seconds(services["worker-gpu"]["healthcheck"]["start_period"]) >= 600


class _Livez(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = json.dumps({"ok": self.status == 200}).encode()
        self.send_response(self.status if self.path == "/livez" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("name", WORKERS)
def test_worker_healthchecks_fail_while_livez_answers_503_or_nothing(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    """The check as Docker runs it (the image's python), against a stand-in /livez."""
    service = services[name]
    _, program, *arguments = service["healthcheck"]["test"]
    assert program == "python"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Livez)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]

    def check() -> int:
        environment = {**os.environ, "SYNTHGATE_WORKER_METRICS_PORT": str(port)}
        return subprocess.run(
            [sys.executable, *arguments], env=environment, capture_output=True, timeout=30
        ).returncode

    try:
        assert service["environment"]["SYNTHGATE_WORKER_METRICS_PORT"] == "9100"
        _Livez.status = 200
        assert check() == 0
        _Livez.status = 503
        assert check() != 0
    finally:
        _Livez.status = 200
        server.shutdown()
        server.server_close()
    assert check() != 0  # nothing listening


def test_workers_get_a_warm_shutdown_that_ends_or_hands_back_their_tasks(
    services: dict[str, dict[str, Any]],
) -> None:
    gpu = services["worker-gpu"]
    grace = seconds(gpu["stop_grace_period"])
    # Celery's warm shutdown finishes the running task: longer than a task, shorter than
    # the broker's redelivery.
    assert 600 <= grace < int(gpu["environment"]["SYNTHGATE_VISIBILITY_TIMEOUT_SECONDS"])
    upstream = services["worker-upstream"]
    # The upstream worker hands back what outlasts its own grace, before it is killed.
    hand_back = float(upstream["environment"]["SYNTHGATE_WORKER_GRACE_SECONDS"])
    assert hand_back < seconds(upstream["stop_grace_period"])
    assert seconds(services["gateway"]["stop_grace_period"]) <= 60


def test_gpu_worker_reserves_one_gpu_and_reads_weights_read_only(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker-gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    environment = worker["environment"]
    assert environment["SYNTHGATE_WORKER_CONCURRENCY"] == "1"
    assert environment["SYNTHGATE_DEVICE"] == "cuda"
    (weights,) = [v for v in worker["volumes"] if isinstance(v, str)]
    assert weights.endswith(f":{environment['SYNTHGATE_SDXL_WEIGHTS_DIR']}:ro")
    assert "/home/synthgate/.cache" in worker["tmpfs"]
    assert worker["build"]["dockerfile"] == "deploy/gpu-worker.Dockerfile"


def test_images_are_pinned_and_builds_use_the_deploy_dockerfiles(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        tag = service["image"].partition(":")[2]
        assert tag and tag != "latest", name
        if "build" in service:
            context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
    assert services["worker-upstream"]["image"] == services["gateway"]["image"]


def test_dashscope_accounts_reach_the_gateway_and_the_upstream_worker_only(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("gateway", "worker-upstream"):
        environment = services[name]["environment"]
        for variable in UPSTREAM_SECRETS:
            assert environment[variable].startswith(f"${{{variable}:-"), (name, variable)
    assert not set(UPSTREAM_SECRETS) & set(services["worker-gpu"]["environment"])
    # With deploy/.env's upstream variables left empty, the defaults are settings the
    # application accepts: no account, DashScope itself.
    environment = services["worker-upstream"]["environment"]
    for name in [n for n in os.environ if n.startswith("SYNTHGATE_")]:
        monkeypatch.delenv(name)
    for variable in (*UPSTREAM_SECRETS, "SYNTHGATE_UPSTREAM_BASE_URL"):
        monkeypatch.setenv(variable, unset(environment[variable]))
    settings = Settings.from_env()
    assert settings.accounts() == ()
    assert settings.upstream_base_url == "https://dashscope.aliyuncs.com/api/v1"
    monkeypatch.setenv(
        "SYNTHGATE_UPSTREAM_ACCOUNTS",
        '[{"name": "main", "api_key": "sk-1", "max_running_by_model": {"wanx-v1": 1}}]',
    )
    (account,) = Settings.from_env().accounts()
    assert (account.name, account.running_limit("wanx-v1")) == ("main", 1)


def test_every_synthgate_container_reads_the_catalog_file_mounted_read_only(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SYNTHGATE:
        service = services[name]
        (mount,) = [v for v in service["volumes"] if isinstance(v, dict)]
        assert mount["target"] == service["environment"]["SYNTHGATE_MODEL_CATALOG"], name
        assert mount["read_only"] is True, name
        assert mount["bind"] == {"create_host_path": False}, name  # missing: `up` fails
    # By default the file is the built-in catalog itself, which changes nothing.
    source = (COMPOSE_FILE.parent / unset(mount["source"])).resolve()
    assert source == (COMPOSE_FILE.parents[1] / "taskcore" / "models.yaml").resolve()
    for name in [n for n in os.environ if n.startswith("SYNTHGATE_")]:
        monkeypatch.delenv(name)
    settings = Settings.from_env(model_catalog=source, upstream_api_key="sk-1")
    assert settings.catalog.models == load_catalog().models


def test_secrets_come_from_the_environment_and_every_variable_is_in_the_example() -> None:
    text = COMPOSE_FILE.read_text()
    compose = yaml.safe_load(text)
    environment = compose["services"]["gateway"]["environment"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SYNTHGATE_ADMIN_TOKEN"):
        assert environment[name].startswith("${"), name
    assert "${MINIO_ROOT_PASSWORD:?" in text  # required: no default password
    variables = set(re.findall(r"\$\{(\w+)", text))
    example = (DEPLOY / ".env.example").read_text()
    documented = set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))
    assert variables - documented == set()


def test_synthgate_reaches_minio_as_a_user_limited_to_the_bucket(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in SYNTHGATE:
        environment = services[name]["environment"]
        assert "MINIO_ROOT" not in environment["AWS_ACCESS_KEY_ID"], name
        assert "MINIO_ROOT" not in environment["AWS_SECRET_ACCESS_KEY"], name
        assert environment["AWS_ACCESS_KEY_ID"].startswith("${MINIO_APP_USER:?"), name
        assert environment["AWS_SECRET_ACCESS_KEY"].startswith("${MINIO_APP_PASSWORD:?"), name
    # The init job makes that user and gives it the bucket's policy, and nothing else.
    init = services["minio-bucket"]
    script = " ".join(init["command"])
    assert 'mc admin user add local "$$MINIO_APP_USER" "$$MINIO_APP_PASSWORD"' in script
    assert "mc admin policy create local synthgate-bucket /policy.json" in script
    assert "mc admin policy attach local synthgate-bucket --user" in script
    assert "./minio-bucket-policy.json:/policy.json:ro" in init["volumes"]
    policy = json.loads((DEPLOY / "minio-bucket-policy.json").read_text())
    bucket = services["gateway"]["environment"]["SYNTHGATE_S3_BUCKET"]
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement["Resource"]) <= {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        actions |= set(statement["Action"])
    assert actions == {
        "s3:GetBucketLocation",
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
    }
