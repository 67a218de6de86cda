"""Tasks through a live gateway and worker that store images in moto's S3 server over HTTP."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fixtures.processes import SynthgateProcess, free_port, wait_http_ok, wait_until
from fixtures.s3 import BUCKET, MotoServer, s3_env
from fixtures.stack import Stack
from fixtures.tasks import FINAL, body, png_size, submit, wait_status
from fixtures.tenants import register_tenant

from taskcore import redis_keys
from taskcore.records import decode_results

V15 = "stable-diffusion-v1.5"
Tenant = tuple[str, httpx.Client]


@pytest.fixture
def tenant(s3_stack: Stack) -> Iterator[Callable[..., Tenant]]:
    """Make a tenant of the S3 stack (named, or a fresh name) and a client with its key."""
    clients: list[httpx.Client] = []

    def make(name: str | None = None) -> Tenant:
        name = name or "t-" + secrets.token_hex(4)
        key = register_tenant(s3_stack.redis.url, name)
        clients.append(httpx.Client(base_url=s3_stack.api, headers=s3_stack.headers(key)))
        return name, clients[-1]

    yield make
    for api in clients:
        api.close()


def _run(api: httpx.Client, n: int = 1, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    task_id = submit(api, body(V15, n=n, steps=1))
    return task_id, wait_status(api, task_id, FINAL, timeout)["output"]


def _prefix(tenant: str, task_id: str, output: dict[str, Any]) -> str:
    return f"{tenant}/{output['submit_time'][:10]}/{task_id}/"


def _worker_retried(stack: Stack, task_id: str, error: str = "") -> bool:
    return any(
        task_id in line and "retrying" in line and error in line
        for line in stack.worker.log_text().splitlines()
    )


def test_images_are_objects_under_tenant_day_task_and_presigned_urls_download_them(
    s3_stack: Stack, moto: MotoServer, tenant: Callable[..., Tenant]
) -> None:
    name, api = tenant()
    task_id, output = _run(api, n=2)
    assert output["task_status"] == "SUCCEEDED", output
    prefix = _prefix(name, task_id, output)
    assert moto.keys(prefix) == [f"{prefix}0.png", f"{prefix}1.png"]
    for index, result in enumerate(output["results"]):
        assert urlsplit(result["url"]).netloc == urlsplit(moto.public_endpoint).netloc
        stored = moto.client().get_object(Bucket=BUCKET, Key=f"{prefix}{index}.png")
        assert stored["ContentType"] == "image/png"
        downloaded = httpx.get(result["url"], timeout=10)
        assert downloaded.status_code == 200
        assert downloaded.content == stored["Body"].read()
        assert png_size(downloaded.content) == (512, 512)
    # The record holds object keys; URLs are made (and signed) at each fetch.
    # (stored relative to the task's folder, see taskcore.records.encode_results)
    record = decode_results(
        s3_stack.redis.client().hget(redis_keys.task(task_id), "results") or b"[]"
    )
    assert record == [{"key": f"{prefix}0.png"}, {"key": f"{prefix}1.png"}]


def test_presigned_urls_expire_when_the_record_does(
    s3_stack: Stack, tenant: Callable[..., Tenant]
) -> None:
    _, api = tenant()
    _, output = _run(api)
    end = datetime.strptime(output["end_time"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    query = parse_qs(urlsplit(output["results"][0]["url"]).query)
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expires = signed.timestamp() + int(query["X-Amz-Expires"][0])
    # The record lives SYNTHGATE_TASK_TTL_SECONDS (24 h here) after the task ended.
    assert abs(expires - (end.timestamp() + 86_400)) <= 2


def test_tenant_prefixes_never_cross(
    s3_stack: Stack, moto: MotoServer, tenant: Callable[..., Tenant]
) -> None:
    first, first_client = tenant()
    second, second_client = tenant(first + "-corp")  # a name the other's is a prefix of
    first_task, first_output = _run(first_client)
    second_task, second_output = _run(second_client)
    assert first_output["task_status"] == second_output["task_status"] == "SUCCEEDED"
    assert moto.keys(f"{first}/") == [f"{_prefix(first, first_task, first_output)}0.png"]
    assert moto.keys(f"{second}/") == [f"{_prefix(second, second_task, second_output)}0.png"]
    for api, other in [(first_client, second_task), (second_client, first_task)]:
        seen = api.get(f"/tasks/{other}").json()["output"]
        assert seen == {"task_id": other, "task_status": "UNKNOWN"}
        listed = api.get("/tasks").json()["data"]
        assert other not in {item["task_id"] for item in listed}


def test_storage_down_past_the_retry_budget_fails_the_task_cleanly(
    s3_stack: Stack, moto: MotoServer, tenant: Callable[..., Tenant]
) -> None:
    _, api = tenant()
    moto.stop()
    task_id, output = _run(api, n=2)
    assert output["task_status"] == "FAILED"
    assert output["code"] == "InternalError.Storage"
    assert "could not be stored" in output["message"]
    assert "results" not in output
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 2}
    assert _worker_retried(s3_stack, task_id)


def test_storage_restarted_within_the_retry_budget_the_task_succeeds(
    s3_stack: Stack, moto: MotoServer, tenant: Callable[..., Tenant]
) -> None:
    name, api = tenant()
    moto.stop()
    task_id = submit(api, body(V15, n=2, steps=1))
    wait_until(lambda: _worker_retried(s3_stack, task_id), 60, "a failed upload attempt")
    moto.restart()  # empty again: the bucket is made anew, as after a store's data loss
    output = wait_status(api, task_id, FINAL, 60)["output"]
    assert output["task_status"] == "SUCCEEDED", output
    prefix = _prefix(name, task_id, output)
    assert moto.keys(prefix) == [f"{prefix}0.png", f"{prefix}1.png"]
    assert all(httpx.get(r["url"], timeout=10).status_code == 200 for r in output["results"])


def test_hanging_storage_times_out_and_the_retried_upload_succeeds(
    s3_stack: Stack, moto: MotoServer, tenant: Callable[..., Tenant]
) -> None:
    name, api = tenant()
    moto.freeze()
    task_id = submit(api, body(V15, steps=1))
    wait_until(lambda: _worker_retried(s3_stack, task_id, "timeout"), 60, "an upload timeout")
    moto.thaw()
    output = wait_status(api, task_id, FINAL, 60)["output"]
    assert output["task_status"] == "SUCCEEDED", output
    assert moto.keys(_prefix(name, task_id, output)) != []


def _start(command: str, env: dict[str, str], log: Path) -> SynthgateProcess:
    process = SynthgateProcess(command, env, log)
    process.start()
    return process


def test_gateway_and_worker_refuse_to_start_without_their_bucket(
    s3_stack: Stack, moto: MotoServer, tmp_path: Path
) -> None:
    bucket = "absent-" + secrets.token_hex(4)
    env = {
        **s3_env(moto, bucket),
        "SYNTHGATE_REDIS_URL": s3_stack.redis.url,
        "SYNTHGATE_PORT": str(free_port()),
    }
    started = [_start(command, env, tmp_path / f"{command}.log") for command in ("serve", "worker")]
    for process in started:
        assert process.process is not None
        assert process.process.wait(timeout=60) != 0
        assert f"s3://{bucket} at {moto.endpoint} does not exist" in process.log_text()
        assert "SYNTHGATE_S3_CREATE_BUCKET=true" in process.log_text()


def test_gateway_creates_the_bucket_when_asked(
    s3_stack: Stack, moto: MotoServer, tmp_path: Path
) -> None:
    bucket = "made-" + secrets.token_hex(4)
    port = free_port()
    env = {
        **s3_env(moto, bucket),
        "SYNTHGATE_S3_CREATE_BUCKET": "true",
        "SYNTHGATE_REDIS_URL": s3_stack.redis.url,
        "SYNTHGATE_PORT": str(port),
    }
    gateway = _start("serve", env, tmp_path / "serve.log")
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", gateway)
        assert bucket in {b["Name"] for b in moto.client().list_buckets()["Buckets"]}
    finally:
        gateway.stop()
