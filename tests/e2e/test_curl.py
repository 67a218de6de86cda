"""The spec's curl examples, run with the real curl binary against a live synthgate."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from fixtures.stack import Stack

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def _curl(*args: str) -> dict[str, object]:
    done = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


def test_spec_curl_submit_then_task_query(stack: Stack) -> None:
    submitted = _curl(
        "--location",
        f"{stack.api}/services/aigc/text2image/image-synthesis",
        "--header",
        "X-DashScope-Async: enable",
        "--header",
        f"Authorization: Bearer {stack.api_key}",
        "--header",
        "Content-Type: application/json",
        "--data",
        """{
    "model": "stable-diffusion-xl",
    "input": {
        "prompt": "a running cat",
        "negative_prompt": "yellow cat"
    },
    "parameters": {
        "size": "512*512",
        "n":4,
        "seed":42,
        "steps": 2
    }
}""",
    )
    output = submitted["output"]
    assert isinstance(output, dict) and output["task_status"] == "PENDING"
    assert submitted["request_id"]
    deadline = time.monotonic() + 120
    while True:
        queried = _curl(
            "-X",
            "GET",
            "--header",
            f"Authorization: Bearer {stack.api_key}",
            f"{stack.api}/tasks/{output['task_id']}",
        )
        task = queried["output"]
        assert isinstance(task, dict)
        if task["task_status"] == "SUCCEEDED" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert task["task_status"] == "SUCCEEDED"
    assert task["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 4, "FAILED": 0}
    assert queried["usage"] == {"image_count": 4}
    assert len(task["results"]) == 4  # type: ignore[arg-type]
