"""The OpenAI-compatible images endpoint, driven by the real ``openai`` client."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable

import httpx
import openai
import pytest
from fixtures.stack import Gateways, Stack
from fixtures.tasks import png_size
from fixtures.tenants import register_tenant

V15 = "stable-diffusion-v1.5"
FAST = {"steps": 2}


def _client(base_url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=120)


def test_the_openai_client_gets_image_urls(stack: Stack) -> None:
    openai_client = _client(stack.base_url, stack.api_key)
    raw = openai_client.images.with_raw_response.generate(
        model=V15, prompt="a red fox", n=2, size="512x512", extra_body=FAST
    )
    images = raw.parse()
    assert images.created > 0 and len(images.data) == 2
    pngs = [httpx.get(item.url or "", timeout=10).content for item in images.data]
    assert [png_size(png) for png in pngs] == [(512, 512)] * 2
    task_id = raw.headers["x-synthgate-task-id"]
    fetched = httpx.get(f"{stack.api}/tasks/{task_id}", headers=stack.headers(), timeout=10)
    assert fetched.json()["output"]["task_status"] == "SUCCEEDED"  # one task, as any other


def test_b64_json_carries_the_png_and_the_default_model_is_sdxl(stack: Stack) -> None:
    openai_client = _client(stack.base_url, stack.api_key)
    raw = openai_client.images.with_raw_response.generate(
        prompt="a lighthouse", size="768x512", response_format="b64_json", extra_body=FAST
    )
    (image,) = raw.parse().data
    assert image.url is None and png_size(base64.b64decode(image.b64_json or "")) == (768, 512)
    task_id = raw.headers["x-synthgate-task-id"]
    listed = httpx.get(f"{stack.api}/tasks", headers=stack.headers(), timeout=10).json()
    (mine,) = [item for item in listed["data"] if item["task_id"] == task_id]
    assert mine["model_name"] == "stable-diffusion-xl"


def test_b64_json_reads_the_image_back_from_s3(s3_stack: Stack) -> None:
    openai_client = _client(s3_stack.base_url, s3_stack.api_key)
    images = openai_client.images.generate(
        model=V15, prompt="a lighthouse", response_format="b64_json", extra_body=FAST
    )
    (image,) = images.data
    assert png_size(base64.b64decode(image.b64_json or "")) == (512, 512)


def test_a_retry_with_the_same_idempotency_key_gets_the_same_task(stack: Stack) -> None:
    openai_client = _client(stack.base_url, stack.api_key)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    kwargs = {"model": V15, "prompt": "a boat", "extra_body": FAST, "extra_headers": headers}
    first = openai_client.images.with_raw_response.generate(**kwargs)  # type: ignore[arg-type]
    again = openai_client.images.with_raw_response.generate(**kwargs)  # type: ignore[arg-type]
    assert again.headers["x-synthgate-task-id"] == first.headers["x-synthgate-task-id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().data[0].url == first.parse().data[0].url


def test_errors_come_as_the_openai_client_expects_them(
    stack: Stack, new_tenant: Callable[..., str]
) -> None:
    with pytest.raises(openai.AuthenticationError) as denied:
        _client(stack.base_url, "sk-wrong").images.generate(prompt="a cat", model=V15)
    assert denied.value.code == "invalid_api_key"
    openai_client = _client(stack.base_url, new_tenant(rpm=1))
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client.images.generate(prompt="a cat", model=V15, size="1024x1024")
    assert bad.value.code == "invalid_value" and "512*512" in bad.value.message
    openai_client.images.generate(prompt="a cat", model=V15, extra_body=FAST)
    with pytest.raises(openai.RateLimitError) as limited:
        openai_client.images.generate(prompt="a cat", model=V15, extra_body=FAST)
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_a_task_not_done_in_time_is_a_504_naming_the_task(idle_gateway: Gateways) -> None:
    key = register_tenant(idle_gateway.redis.url, "oai-" + secrets.token_hex(4))
    openai_client = _client(idle_gateway.urls[0], key)
    with pytest.raises(openai.InternalServerError) as late:
        openai_client.images.generate(prompt="a cat", model=V15)
    assert late.value.status_code == 504 and late.value.code == "timeout"
    task_id = late.value.response.headers["x-synthgate-task-id"]
    assert task_id in late.value.message


def test_models_are_listed(stack: Stack) -> None:
    names = {model.id for model in _client(stack.base_url, stack.api_key).models.list()}
    assert names == {"stable-diffusion-xl", V15}
