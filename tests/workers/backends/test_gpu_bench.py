"""bench/gpu.py: its configs are the real architectures, and it runs end to end (smoke)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Every test starts Python with torch and diffusers (bench/gpu.py, or the model configs on
# the meta device): seconds to a minute each.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]
BENCH = REPO_ROOT / "bench"

# Runs bench/gpu.py as a script, then fails if it imported what a GPU machine lacks.
RUNNER = """
import runpy, sys
sys.argv = ["bench/gpu.py", *sys.argv[1:]]
status = 0
try:
    runpy.run_path("bench/gpu.py", run_name="__main__")
except SystemExit as stop:
    status = stop.code
forbidden = {"celery", "redis", "fastapi", "orjson", "pydantic_settings", "gateway"}
imported = sorted(forbidden & {name.split(".")[0] for name in sys.modules})
if imported:
    sys.exit(f"bench/gpu.py imported {imported}")
sys.exit(status)
"""


def run_bench(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        cwd=REPO_ROOT,
        env={"OUT": str(out), "PATH": "/usr/bin:/bin", "HOME": str(out)},
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_sd_configs_have_the_published_parameter_counts() -> None:
    code = f"""
import sys, torch
sys.path.insert(0, {str(BENCH)!r})
import sd_configs as c
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

def count(model):
    return sum(p.numel() for p in model.parameters())

with torch.device("meta"):
    print(dict(
        sd15_unet=count(UNet2DConditionModel(**c.SD15_UNET)),
        sdxl_unet=count(UNet2DConditionModel(**c.SDXL_UNET)),
        vae=count(AutoencoderKL(**c.SD15_VAE)),
        clip_l=count(CLIPTextModel(CLIPTextConfig(**c.CLIP_L))),
        clip_big_g=count(CLIPTextModelWithProjection(CLIPTextConfig(**c.CLIP_BIG_G))),
    ) == c.PARAMETERS, c.SDXL_VAE["force_upcast"], c.SDXL_VAE_FP16_FIX["force_upcast"])
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split() == ["True", "True", "False"], result.stdout + result.stderr


def test_smoke_run_times_every_variant_and_batching_and_writes_json(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "--smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "gpu-bench.json").read_text())
    assert data["errors"] == [] and data["skipped"] == []
    runs = {(r["model"], r["variant"], r["n"]) for r in data["runs"]}
    assert runs == {
        (model, variant, n)
        for model in ("sd15", "sdxl")
        for variant in ("diffusers", "worker-eager", "worker")
        for n in (1, 2)
    }
    assert all(r["seconds_per_image"] > 0 and r["steps"] == 2 for r in data["runs"])
    assert [(w["model"], w["compiled"]) for w in data["warm_up"]] == [
        ("sd15", False),
        ("sdxl", False),
    ]
    cross = [(c["model"], c["batching"], c["pipeline"]) for c in data["cross_request"]]
    assert cross == [(m, mode, "worker") for m in ("sd15", "sdxl") for mode in ("off", "on")]
    assert {(c["requests"], c["max_batch"]) for c in data["cross_request"]} == {(4, 3)}
    table = (tmp_path / "gpu-bench.txt").read_text()
    assert result.stdout.endswith(table)
    assert "cross-request sdxl (worker), 4 tasks of n=1: off" in table


def test_a_failing_variant_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    result = run_bench(
        tmp_path, "--smoke", "--models", "sd15", "--variants", "diffusers,worker",
        "--compile-backend", "no-such-backend",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    data = json.loads((tmp_path / "gpu-bench.json").read_text())
    assert [e["what"] for e in data["errors"]] == ["prepare sd15 worker"]
    assert {r["variant"] for r in data["runs"]} == {"diffusers"}
    assert [c["pipeline"] for c in data["cross_request"]] == ["worker-eager"] * 2
    assert "ERROR: prepare sd15 worker" in result.stdout


def test_nothing_new_starts_once_the_time_budget_is_spent(tmp_path: Path) -> None:
    result = run_bench(tmp_path, "--smoke", "--models", "sd15", "--budget-s", "0.001")
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "gpu-bench.json").read_text())
    assert data["runs"] == [] and data["warm_up"] == [] and data["cross_request"] == []
    assert [s["what"] for s in data["skipped"]] == [
        "sd15 diffusers",
        "sd15 worker-eager",
        "sd15 worker",
        "sd15 cross-request off",
        "sd15 cross-request on",
    ]
