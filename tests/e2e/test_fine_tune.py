"""A company fine-tune served under its own name: a catalog entry of family sdxl with a
weights folder of its own (here the tiny random SDXL pipeline), on the sdxl GPU pool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.processes import running_redis
from fixtures.stack import Stack, start_stack
from fixtures.tasks import FINAL, png_size, submit, wait_status

FINE_TUNE = "acme-sdxl-v2"


@pytest.fixture(scope="module")
def stack(demo_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    catalog = tmp_path_factory.mktemp("catalog") / "models.yaml"
    entry = {
        "name": FINE_TUNE,
        "runs": "local",
        "family": "sdxl",
        "weights": str(demo_weights_dir / "sdxl"),
        "size": {"default": "512*512", "choices": ["512*512", "512*768"]},
        "n": {"min": 1, "max": 2, "default": 1},
        "steps": {"min": 1, "max": 8, "default": 2},
        "scale": {"min": 1, "max": 9, "default": 5},
        "seed": {"min": 0, "max": 2147483647},
    }
    catalog.write_text(json.dumps({"models": [entry]}))
    env = {
        "SYNTHGATE_MODEL_CATALOG": str(catalog),
        "SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir),
        "OMP_NUM_THREADS": "1",
    }
    with (
        running_redis(tmp_path_factory.mktemp("tune-redis")) as redis_server,
        start_stack(redis_server, tmp_path_factory.mktemp("tune"), env, ["gpu.sdxl"]) as running,
    ):
        yield running


def test_a_fine_tune_is_served_under_its_own_name_with_its_own_rules(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api, headers=stack.headers(), timeout=30) as api:
        body = {"model": FINE_TUNE, "input": {"prompt": "our mascot"}, "parameters": {"n": 2}}
        done = wait_status(api, submit(api, body), FINAL, timeout=180)["output"]
        assert done["task_status"] == "SUCCEEDED", done
        for result in done["results"]:
            assert png_size(httpx.get(result["url"], timeout=10).content) == (512, 512)
        too_many = {**body, "parameters": {"steps": 9}}
        refused = api.post("/services/aigc/text2image/image-synthesis", json=too_many)
        assert refused.status_code == 400
        assert "'parameters.steps' must be between 1 and 8" in refused.json()["message"]
        models = api.get("/models").json()["output"]["models"]
        assert FINE_TUNE in {m["model"] for m in models}
    assert f"the sdxl pipeline of {FINE_TUNE}" in stack.worker.log_text()
