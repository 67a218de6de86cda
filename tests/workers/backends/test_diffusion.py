"""The diffusers backend, on real tiny random-weight pipelines built offline."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from taskcore.contract import GenerationRequest, ImageOutcome
from taskcore.settings import Settings
from workers.backends.demo_weights import build_demo_pipeline
from workers.backends.diffusion import (
    ALGO_ERROR,
    IMAGE_FAILED_MESSAGE,
    NON_FINITE_MESSAGE,
    DiffusersBackend,
    StepHook,
    kind_for_model,
)
from workers.runtime import LocalBackend

if TYPE_CHECKING:
    import numpy as np
    import torch

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("demo-pipelines")
    build_demo_pipeline("sd15", cache)
    build_demo_pipeline("sdxl", cache)
    return cache


@pytest.fixture(scope="module")
def backend(demo_cache: Path) -> DiffusersBackend:
    return DiffusersBackend({"sd15": None, "sdxl": None}, demo_cache, device="cpu")


def sd15_request(n: int = 1, seed: int = 42, steps: int = 2) -> GenerationRequest:
    return GenerationRequest(
        model="stable-diffusion-v1.5",
        prompt="a lighthouse at dusk",
        negative_prompt="blurry",
        width=512,
        height=512,
        n=n,
        steps=steps,
        scale=7.0,
        seed=seed,
    )


def png_size(outcome: ImageOutcome) -> tuple[int, int]:
    assert outcome.png is not None, outcome
    with Image.open(io.BytesIO(outcome.png)) as image:
        assert image.format == "PNG"
        return image.size


class FlakyBackend(DiffusersBackend):
    """Fails batched calls, and the single call for the seeds in ``failing_seeds``."""

    def __init__(self, demo_cache: Path, failing_seeds: set[int]) -> None:
        super().__init__({"sd15": None}, demo_cache, device="cpu")
        self.failing_seeds = failing_seeds
        self.batch_sizes: list[int] = []

    def _run_pipeline(
        self,
        pipe: Any,
        generators: list[torch.Generator],
        request: GenerationRequest,
        on_step: StepHook | None,
    ) -> np.ndarray:
        self.batch_sizes.append(len(generators))
        if len(generators) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if generators[0].initial_seed() in self.failing_seeds:
            raise RuntimeError("simulated kernel failure")
        return super()._run_pipeline(pipe, generators, request, on_step)


class NaNBackend(DiffusersBackend):
    """Poisons the pixels of image 1 of every batch with NaN."""

    def _run_pipeline(
        self,
        pipe: Any,
        generators: list[torch.Generator],
        request: GenerationRequest,
        on_step: StepHook | None,
    ) -> np.ndarray:
        images = super()._run_pipeline(pipe, generators, request, on_step)
        images[1, 0, 0, 0] = float("nan")
        return images


def test_build_demo_pipeline_returns_the_cached_folder_without_rebuilding(
    demo_cache: Path,
) -> None:
    index = demo_cache / "sd15" / "model_index.json"
    before = index.stat().st_mtime_ns
    assert build_demo_pipeline("sd15", demo_cache) == demo_cache / "sd15"
    assert index.stat().st_mtime_ns == before  # not written again (no timing: a busy box)
    assert not [p for p in demo_cache.iterdir() if p.name.startswith(".")], "no staging left"


def test_demo_pipeline_builds_are_bit_for_bit_identical(demo_cache: Path, tmp_path: Path) -> None:
    rebuilt = build_demo_pipeline("sdxl", tmp_path)
    for part in ("unet/diffusion_pytorch_model.safetensors", "text_encoder_2/model.safetensors"):
        assert (rebuilt / part).read_bytes() == (demo_cache / "sdxl" / part).read_bytes()


@pytest.mark.slow  # builds a pipeline twice, at once
def test_build_demo_pipeline_replaces_an_incomplete_folder_and_survives_a_race(
    tmp_path: Path,
) -> None:
    (tmp_path / "sd15").mkdir()
    (tmp_path / "sd15" / "half-written.bin").write_bytes(b"x")
    results: list[Path] = []
    builders = [
        threading.Thread(target=lambda: results.append(build_demo_pipeline("sd15", tmp_path)))
        for _ in range(2)
    ]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join()
    assert results == [tmp_path / "sd15"] * 2
    assert (tmp_path / "sd15" / "model_index.json").is_file()
    assert not (tmp_path / "sd15" / "half-written.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["sd15"]


def test_demo_pipelines_load_through_from_pretrained_with_real_shapes(demo_cache: Path) -> None:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    sd15 = StableDiffusionPipeline.from_pretrained(demo_cache / "sd15")
    sdxl = StableDiffusionXLPipeline.from_pretrained(demo_cache / "sdxl")
    assert (sd15.vae_scale_factor, sd15.unet.config.sample_size) == (8, 64)
    assert (sdxl.vae_scale_factor, sdxl.unet.config.sample_size) == (8, 128)
    assert sdxl.unet.config.addition_embed_type == "text_time"
    for tokenizer in (sd15.tokenizer, sdxl.tokenizer, sdxl.tokenizer_2):
        assert tokenizer.model_max_length == 77
        assert len(tokenizer) == sd15.text_encoder.config.vocab_size
    assert sdxl.tokenizer_2.pad_token == "!"
    assert (demo_cache / "sdxl" / "tokenizer_2" / "vocab.json").is_file()


def test_sd15_makes_n_distinct_512_pngs_in_one_call(backend: DiffusersBackend) -> None:
    outcomes = backend.generate("sd15", sd15_request(n=2))
    assert [o.index for o in outcomes] == [0, 1]
    assert [png_size(o) for o in outcomes] == [(512, 512), (512, 512)]
    assert outcomes[0].png != outcomes[1].png


def test_same_seed_gives_identical_png_bytes(backend: DiffusersBackend) -> None:
    first = backend.generate("sd15", sd15_request(seed=7))
    second = backend.generate("sd15", sd15_request(seed=7))
    other = backend.generate("sd15", sd15_request(seed=8))
    assert first[0].png is not None
    assert first[0].png == second[0].png
    assert first[0].png != other[0].png


def test_sdxl_makes_a_768_by_1024_png(backend: DiffusersBackend) -> None:
    request = GenerationRequest(
        model="stable-diffusion-xl",
        prompt="a red fox",
        negative_prompt="",
        width=768,
        height=1024,
        n=1,
        steps=2,
        scale=5.0,
        seed=1,
    )
    [outcome] = backend.generate("sdxl", request)
    assert png_size(outcome) == (768, 1024)


def test_on_step_reports_progress_up_to_the_total(backend: DiffusersBackend) -> None:
    calls: list[tuple[int, int]] = []
    backend.generate(
        "sd15", sd15_request(steps=3), on_step=lambda done, total: calls.append((done, total))
    )
    assert calls
    assert calls[-1][0] == calls[-1][1]
    assert [done for done, _ in calls] == list(range(1, len(calls) + 1))


def test_failed_batch_is_retried_one_image_at_a_time(demo_cache: Path) -> None:
    flaky = FlakyBackend(demo_cache, failing_seeds=set())
    outcomes = flaky.generate("sd15", sd15_request(n=2, seed=100))
    assert flaky.batch_sizes == [2, 1, 1]
    assert all(o.ok for o in outcomes)
    assert [png_size(o) for o in outcomes] == [(512, 512), (512, 512)]


def test_image_that_fails_alone_is_recorded_with_its_code(demo_cache: Path) -> None:
    flaky = FlakyBackend(demo_cache, failing_seeds={101})
    outcomes = flaky.generate("sd15", sd15_request(n=3, seed=100))
    assert [o.ok for o in outcomes] == [True, False, True]
    # The error's text stays in the log; the tenant sees the code and a short message.
    assert outcomes[1] == ImageOutcome(1, code=ALGO_ERROR, message=IMAGE_FAILED_MESSAGE)


def test_non_finite_pixels_make_a_failed_image(demo_cache: Path) -> None:
    poisoned = NaNBackend({"sd15": None}, demo_cache, device="cpu")
    outcomes = poisoned.generate("sd15", sd15_request(n=2))
    assert outcomes[0].ok
    assert outcomes[1] == ImageOutcome(1, code=ALGO_ERROR, message=NON_FINITE_MESSAGE)


def test_demo_weights_log_a_loud_warning(
    demo_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="synthgate.workers.diffusion"):
        DiffusersBackend({"sdxl": None, "sd15": demo_cache / "sd15"}, demo_cache)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "sdxl" in record.getMessage() and "noise" in record.getMessage()


def test_unknown_kinds_and_models_are_rejected(demo_cache: Path) -> None:
    assert kind_for_model("stable-diffusion-xl") == "sdxl"
    assert kind_for_model("stable-diffusion-v1.5") == "sd15"
    with pytest.raises(ValueError):
        kind_for_model("wanx-v1")
    with pytest.raises(ValueError):
        DiffusersBackend({"sd3": None}, demo_cache)
    with pytest.raises(ValueError):
        DiffusersBackend({"sd15": None}, demo_cache).load("sdxl")


def test_importing_the_backend_does_not_import_torch() -> None:
    code = (
        "import sys, workers.backends.diffusion, workers.backends.demo_weights; "
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules); "
        "sys.exit(f'imported {sorted(heavy)}' if heavy else 0)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


def test_loading_a_pipeline_logs_each_step_with_its_source_and_time(
    demo_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configured = DiffusersBackend({"sd15": demo_cache / "sd15"}, demo_cache, device="cpu")
    with caplog.at_level(logging.INFO, logger="synthgate.workers.diffusion"):
        configured.load("sd15")
    said = [r.getMessage() for r in caplog.records if r.name == "synthgate.workers.diffusion"]
    steps = [
        r"sd15 pipeline \(sd15\): loading configured weights as torch\.float32 on cpu",
        rf"sd15 pipeline: read from {re.escape(str(demo_cache / 'sd15'))} in \d+\.\ds",
        r"sd15 pipeline: moved to cpu \(torch\.float32\) in \d+\.\ds",
        r"sd15 pipeline: sped up in \d+\.\ds",
        r"loaded sd15 pipeline from .+ on cpu \(torch\.float32\) in \d+\.\ds",
    ]
    matched = [next(i for i, m in enumerate(said) if re.fullmatch(s, m)) for s in steps]
    assert matched == sorted(matched), said  # in this order

    caplog.clear()
    demo = DiffusersBackend({"sd15": None}, demo_cache, device="cpu")
    with caplog.at_level(logging.INFO, logger="synthgate.workers.diffusion"):
        demo.load("sd15")
        demo.load("sd15")  # kept: no second load
    said = [r.getMessage() for r in caplog.records if r.name == "synthgate.workers.diffusion"]
    assert sum(m.startswith("sd15 pipeline (sd15): loading demo weights") for m in said) == 1
    assert any(
        re.fullmatch(r"sd15 pipeline: demo weights ready in .+ \(\d+\.\ds\)", m) for m in said
    )


def test_preload_logs_each_pipeline_of_the_pool_and_the_total(
    demo_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    diffusers = DiffusersBackend({"sd15": None, "sdxl": None}, demo_cache, device="cpu")
    local = LocalBackend(diffusers, Settings().catalog)
    with caplog.at_level(logging.INFO, logger="synthgate.worker"):
        local.preload("gpu.sd15")
    said = [r.getMessage() for r in caplog.records if r.name == "synthgate.worker"]
    assert said[0] == "pool gpu.sd15: loading the sd15 pipeline of stable-diffusion-v1.5 (1 of 1)"
    assert re.fullmatch(r"pool gpu\.sd15: 1 pipelines ready in \d+\.\ds", said[-1]), said
