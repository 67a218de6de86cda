"""The official dashscope SDK against a live synthgate: the spec's sample, fetch, wait, list."""

from __future__ import annotations

import os
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

import dashscope
import pytest
import requests
from dashscope import ImageSynthesis
from fixtures.stack import Stack
from fixtures.tasks import png_size

SAMPLE = Path(__file__).with_name("spec_sample.py")


def test_spec_python_sample_runs_unchanged_and_saves_real_pngs(
    stack: Stack, tmp_path: Path
) -> None:
    env = {**os.environ, "SYNTHGATE_API_URL": stack.api, "DASHSCOPE_API_KEY": stack.api_key}
    done = subprocess.run(
        [sys.executable, str(SAMPLE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed" not in done.stdout, done.stdout
    assert done.stdout.count('"task_status": "SUCCEEDED"') == 2, done.stdout
    assert '"image_count": 1' in done.stdout
    saved = list(tmp_path.glob("*.png"))
    assert len(saved) == 1
    assert png_size(saved[0].read_bytes()) == (1024, 1024)


@pytest.fixture
def sdk(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setattr(dashscope, "base_http_api_url", stack.api)
    monkeypatch.setattr(dashscope, "api_key", stack.api_key)
    return stack


def _call(**kwargs: Any) -> Any:
    return ImageSynthesis.async_call(model="stable-diffusion-xl", prompt="a lighthouse", **kwargs)


def test_sdk_async_call_fetch_wait_gives_512_png(sdk: Stack) -> None:
    rsp = _call(n=2, size="512*512", steps=3, seed=7)
    assert rsp.status_code == HTTPStatus.OK and rsp.output.task_status == "PENDING"
    assert rsp.request_id
    status = ImageSynthesis.fetch(rsp)
    assert status.status_code == HTTPStatus.OK
    assert status.output.task_status in {"PENDING", "RUNNING", "SUCCEEDED"}
    final = ImageSynthesis.wait(rsp)
    assert final.output.task_status == "SUCCEEDED"
    assert final.output.task_metrics == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert final.usage.image_count == 2
    for result in final.output.results:
        assert png_size(requests.get(result.url, timeout=10).content) == (512, 512)
    for field in ("submit_time", "scheduled_time", "end_time"):
        assert len(final.output[field]) == len("2024-01-01 12:00:00.000")


def test_sdk_bad_key_gets_invalid_api_key(sdk: Stack) -> None:
    rsp = ImageSynthesis.async_call(
        model="stable-diffusion-xl", prompt="a cat", api_key="sk-not-a-real-key"
    )
    assert rsp.status_code == 401
    assert rsp.code == "InvalidApiKey"


def test_sdk_list_returns_own_tasks(sdk: Stack) -> None:
    rsp = _call(n=1, size="512*512", steps=1)
    ImageSynthesis.wait(rsp)
    listed = ImageSynthesis.list(model_name="stable-diffusion-xl", page_size=100)
    assert listed.status_code == HTTPStatus.OK
    ids = [item["task_id"] for item in listed.output["data"]]
    assert rsp.output.task_id in ids


def test_sdk_cancel_of_a_pending_task(sdk: Stack) -> None:
    # A slow task keeps the one worker busy, so the next one stays PENDING until canceled.
    slow = _call(n=1, size="1024*1024", steps=40)
    waiting = _call(n=1, size="512*512", steps=1)
    canceled = ImageSynthesis.cancel(waiting)
    assert canceled.status_code == HTTPStatus.OK
    assert ImageSynthesis.fetch(waiting).output.task_status == "CANCELED"
    assert ImageSynthesis.wait(slow).output.task_status == "SUCCEEDED"
    refused = ImageSynthesis.cancel(slow)
    assert refused.status_code == 400 and refused.code == "UnsupportedOperation"
