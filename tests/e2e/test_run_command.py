"""`synthgate run`: starts Redis when none answers, a gateway and a worker, prints a working key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import redis
from fixtures.processes import ROOT, free_port, wait_until
from fixtures.tasks import body, png_size, run_task


def test_run_starts_the_whole_stack_and_prints_how_to_call_it(
    demo_weights_dir: Path, tmp_path: Path
) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    env = {
        **os.environ,
        "SYNTHGATE_REDIS_URL": redis_url,
        "SYNTHGATE_PORT": str(port),
        "SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("SYNTHGATE_DEV_API_KEY", None)
    out = tmp_path / "run.log"
    with out.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "synthgate.cli", "run"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "API key" in out.read_text(), 60, "the welcome text")
        text = out.read_text()
        key = re.search(r"API key\s*:\s*(sk-\S+)", text)
        assert key, text
        base = f"http://127.0.0.1:{port}/api/v1"
        assert base in text
        assert redis.Redis.from_url(redis_url).ping()  # it started its own redis-server
        with httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {key.group(1)}", "X-DashScope-Async": "enable"},
            timeout=10,
        ) as api:
            wait_until(lambda: _up(api), 60, "the gateway")
            done = run_task(api, body("stable-diffusion-v1.5", steps=1), timeout=120)
            assert done["output"]["task_status"] == "SUCCEEDED", done
            image = httpx.get(done["output"]["results"][0]["url"], timeout=10).content
            assert png_size(image) == (512, 512)
        assert (tmp_path / "var" / "redis").is_dir()  # AOF data of the local Redis
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert not _answers(redis_url)  # the Redis it started stops with it


def _up(api: httpx.Client) -> bool:
    try:
        return api.get("/tasks").status_code == 200
    except httpx.HTTPError:
        return False


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False
