"""DashScope's current models through synthgate: the official SDK unchanged against a wanx
model (async, wait, fetch, list, workspace), a synchronous call, the models list, and the
upstream's result fields passed on, with the images copied into our storage."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import dashscope
import httpx
import pytest
from dashscope import ImageSynthesis
from fixtures.stack import Stack
from fixtures.tenants import register_tenant

WANX = "wanx2.1-t2i-turbo"


@pytest.fixture
def sdk(upstream: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setattr(dashscope, "base_http_api_url", upstream.api)
    monkeypatch.setattr(dashscope, "api_key", upstream.api_key)
    yield upstream


def test_the_sdk_runs_a_wanx_task_unchanged(sdk: Stack) -> None:
    rsp = ImageSynthesis.async_call(
        model=WANX,
        prompt="a lighthouse at dusk",
        size="1024*768",
        n=2,
        prompt_extend=True,
        watermark=False,
        workspace="ws-platform",  # X-DashScope-WorkSpace, accepted
    )
    assert rsp.status_code == HTTPStatus.OK, rsp
    assert rsp.output.task_status == "PENDING"
    done = ImageSynthesis.wait(rsp)
    assert done.status_code == HTTPStatus.OK and done.output.task_status == "SUCCEEDED", done
    assert done.output.task_metrics == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert done.usage.image_count == 2
    for result in done.output.results:
        assert result.url.startswith(sdk.base_url + "/files/")  # copied into our storage
        assert result.orig_prompt == "a lighthouse at dusk"
        assert "a lighthouse at dusk" in result.actual_prompt  # the upstream's extended prompt
        image = httpx.get(result.url, timeout=10)
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    fetched = ImageSynthesis.fetch(rsp)
    assert fetched.output.task_status == "SUCCEEDED"
    listed = ImageSynthesis.list(model_name=WANX, page_size=50)
    assert listed.status_code == HTTPStatus.OK
    assert rsp.output.task_id in {task["task_id"] for task in listed.output["data"]}


def test_the_sdks_sync_call_waits_for_the_result(sdk: Stack) -> None:
    rsp = ImageSynthesis.sync_call(model="wan2.2-t2i-flash", prompt="a red fox", n=1)
    assert rsp.status_code == HTTPStatus.OK, rsp
    assert rsp.output.task_status == "SUCCEEDED"
    assert len(rsp.output.results) == 1 and rsp.output.results[0].url.startswith(sdk.base_url)


def test_a_synchronous_call_to_an_async_only_model_gets_dashscopes_403(upstream: Stack) -> None:
    headers = upstream.headers(async_=False)
    answer = httpx.post(
        f"{upstream.api}/services/aigc/text2image/image-synthesis",
        json={"model": WANX, "input": {"prompt": "a cat"}},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 403 and answer.json()["code"] == "AccessDenied"


def test_the_sdks_upload_flow_gets_a_400_naming_what_to_send(upstream: Stack) -> None:
    headers = {**upstream.headers(), "X-DashScope-OssResourceResolve": "enable"}
    body: dict[str, Any] = {
        "model": "wanx-v1",
        "input": {"prompt": "a cat", "ref_img": "oss://dashscope-instant/cat.png"},
    }
    answer = httpx.post(
        f"{upstream.api}/services/aigc/text2image/image-synthesis",
        json=body,
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"
    assert "http(s) URL" in answer.json()["message"]


def test_the_models_list_shows_what_the_tenant_may_call_with_the_rules(upstream: Stack) -> None:
    every = httpx.get(f"{upstream.api}/models", headers=upstream.headers(), timeout=10)
    assert every.status_code == 200
    models = {m["model"]: m for m in every.json()["output"]["models"]}
    assert {WANX, "qwen-image", "stable-diffusion-xl"} <= set(models)
    assert models[WANX]["n"] == {"min": 1, "max": 4, "default": 4}
    assert models[WANX]["fields"]["prompt_extend"] == {
        "type": "bool",
        "in": "parameters",
        "default": True,
    }
    assert models["wan2.2-t2i-flash"]["sync"] is True
    key = register_tenant(upstream.redis.url, "only-qwen", models=("qwen-image",))
    mine = httpx.get(f"{upstream.api}/models", headers=upstream.headers(key), timeout=10)
    assert [m["model"] for m in mine.json()["output"]["models"]] == ["qwen-image"]
    openai = httpx.get(f"{upstream.base_url}/v1/models", headers=upstream.headers(key), timeout=10)
    assert [m["id"] for m in openai.json()["data"]] == ["qwen-image"]
    denied = httpx.post(
        f"{upstream.api}/services/aigc/text2image/image-synthesis",
        json={"model": WANX, "input": {"prompt": "a cat"}},
        headers=upstream.headers(key),
        timeout=10,
    )
    assert denied.status_code == 403 and denied.json()["code"] == "AccessDenied.Unpurchased"
