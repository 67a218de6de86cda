"""The worker's speed options: settings, what each does to a pipeline, and that images stay."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from taskcore.contract import GenerationRequest, ImageOutcome
from taskcore.settings import Settings, SettingsError
from workers.backends.diffusion import DiffusersBackend
from workers.backends.optimizations import PipelineOptions

PLAIN = PipelineOptions(compile=False, channels_last=False, fuse_qkv=False, vae_slicing=False)


def request(n: int = 1, seed: int = 3) -> GenerationRequest:
    return GenerationRequest("stable-diffusion-v1.5", "a harbour", "fog", 512, 512, n, 2, 6.0, seed)


def pixels(outcome: ImageOutcome) -> np.ndarray:
    assert outcome.png is not None, outcome
    with Image.open(io.BytesIO(outcome.png)) as image:
        return np.asarray(image, dtype=np.int16)


def assert_same_images(first: list[ImageOutcome], second: list[ImageOutcome]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert np.abs(pixels(a) - pixels(b)).max() <= 1


def is_channels_last(pipe: object) -> bool:
    import torch

    weight = pipe.unet.conv_in.weight  # type: ignore[attr-defined]
    return bool(weight.is_contiguous(memory_format=torch.channels_last))


def is_fused(pipe: object) -> bool:
    processors = pipe.unet.attn_processors.values()  # type: ignore[attr-defined]
    return all(type(p).__name__ == "FusedAttnProcessor2_0" for p in processors)


@pytest.fixture(scope="module")
def plain(demo_weights_dir: Path) -> DiffusersBackend:
    return DiffusersBackend({"sd15": None}, demo_weights_dir, device="cpu", options=PLAIN)


@pytest.fixture(scope="module")
def plain_images(plain: DiffusersBackend) -> list[ImageOutcome]:
    return plain.generate("sd15", request(n=2))


def test_speed_settings_default_on_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, demo_weights_dir: Path
) -> None:
    defaults = DiffusersBackend.from_settings(Settings(demo_weights_dir=demo_weights_dir))
    assert defaults.options == PipelineOptions(compile=True, max_batch=8)
    for name, value in {
        "TORCH_COMPILE": "false",
        "COMPILE_MODE": "max-autotune",
        "CHANNELS_LAST": "0",
        "FUSE_QKV": "no",
        "MAX_BATCH": "4",
    }.items():
        monkeypatch.setenv(f"SYNTHGATE_{name}", value)
    backend = DiffusersBackend.from_settings(Settings.from_env())
    assert backend.options == PipelineOptions(
        compile=False, compile_mode="max-autotune", channels_last=False, fuse_qkv=False, max_batch=4
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYNTHGATE_MAX_BATCH", "0"),
        ("SYNTHGATE_MAX_BATCH", "65"),
        ("SYNTHGATE_COMPILE_MODE", "fastest"),
        ("SYNTHGATE_TORCH_COMPILE", "sometimes"),
        ("SYNTHGATE_SDXL_VAE_WEIGHTS_DIR", "/nonexistent/vae"),
    ],
)
def test_bad_speed_settings_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env()


def test_compile_is_skipped_on_the_cpu_with_a_log_line_and_the_rest_applies(
    demo_weights_dir: Path, caplog: pytest.LogCaptureFixture, plain_images: list[ImageOutcome]
) -> None:
    backend = DiffusersBackend.from_settings(Settings(demo_weights_dir=demo_weights_dir))
    with caplog.at_level(logging.INFO, logger="synthgate.workers.diffusion"):
        pipe = backend.load("sd15")
    messages = [record.getMessage() for record in caplog.records]
    assert any("torch.compile skipped on cpu" in m for m in messages), messages
    assert "sd15 pipeline on cpu: channels_last, fuse_qkv, vae_slicing" in messages
    assert pipe.unet._compiled_call_impl is None
    assert is_channels_last(pipe) and is_fused(pipe) and pipe.vae.use_slicing
    assert_same_images(backend.generate("sd15", request(n=2)), plain_images)


def test_switched_off_options_leave_the_pipeline_plain(plain: DiffusersBackend) -> None:
    pipe = plain.load("sd15")
    assert not is_channels_last(pipe)
    assert not is_fused(pipe)
    assert not pipe.vae.use_slicing


def test_compiled_sd15_traces_whole_and_warm_up_covers_every_batch_size(
    demo_weights_dir: Path, caplog: pytest.LogCaptureFixture, plain_images: list[ImageOutcome]
) -> None:
    # The eager backend runs Dynamo's tracing (fullgraph: no graph breaks allowed) without
    # Inductor's code generation, which is what a GPU compiles.
    backend = compiled_backend(demo_weights_dir, "sd15", caplog)
    graphs = compiled_graphs()
    assert_same_images(backend.generate("sd15", request(n=2)), plain_images)
    backend.generate("sd15", request(n=3))
    backend.generate_batch("sd15", [request(n=1), request(n=3, seed=9)])
    assert compiled_graphs() == graphs, "a task recompiled after warm-up"


def test_compiled_sdxl_warm_up_covers_other_sizes_and_batch_sizes(
    demo_weights_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = compiled_backend(demo_weights_dir, "sdxl", caplog)
    graphs = compiled_graphs()
    tall = GenerationRequest("stable-diffusion-xl", "a fox", "", 512, 768, 2, 2, 5.0, 1)
    wide = GenerationRequest("stable-diffusion-xl", "a owl", "dark", 1024, 640, 3, 2, 8.0, 2)
    assert all(o.ok for o in backend.generate("sdxl", tall))
    assert all(o.ok for o in backend.generate_batch("sdxl", [wide, wide])[1])
    assert compiled_graphs() == graphs, "a task recompiled after warm-up"


def test_a_failed_compilation_is_logged_and_the_pipeline_runs_uncompiled(
    demo_weights_dir: Path, caplog: pytest.LogCaptureFixture, plain_images: list[ImageOutcome]
) -> None:
    options = PipelineOptions(compile=True, compile_backend="no-such-backend")
    backend = DiffusersBackend({"sd15": None}, demo_weights_dir, device="cpu", options=options)
    with caplog.at_level(logging.INFO, logger="synthgate.workers.diffusion"):
        pipe = backend.load("sd15")
    failures = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert failures and failures[0].levelno == logging.ERROR
    assert pipe.unet._compiled_call_impl is None
    assert pipe.vae.decoder._compiled_call_impl is None
    assert_same_images(backend.generate("sd15", request(n=2)), plain_images)


def compiled_backend(
    demo_weights_dir: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> DiffusersBackend:
    options = PipelineOptions(compile=True, compile_backend="eager")
    backend = DiffusersBackend({kind: None}, demo_weights_dir, device="cpu", options=options)
    with caplog.at_level(logging.INFO, logger="synthgate.workers.diffusion"):
        pipe = backend.load(kind)
    assert any("warmed up" in record.getMessage() for record in caplog.records)
    assert pipe.unet._compiled_call_impl is not None
    assert pipe.vae.decoder._compiled_call_impl is not None
    return backend


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def test_an_fp16_safe_sdxl_vae_replaces_the_pipelines_own(
    demo_weights_dir: Path, tmp_path: Path
) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(demo_weights_dir / "sdxl" / "vae")
    assert vae.config.force_upcast
    vae.register_to_config(force_upcast=False)
    vae.save_pretrained(tmp_path / "vae-fp16-fix")
    settings = Settings(
        demo_weights_dir=demo_weights_dir, sdxl_vae_weights_dir=tmp_path / "vae-fp16-fix"
    )
    backend = DiffusersBackend.from_settings(settings)
    assert backend.load("sdxl").vae.config.force_upcast is False
    sdxl = GenerationRequest("stable-diffusion-xl", "a fox", "", 512, 512, 1, 2, 5.0, 1)
    assert backend.generate("sdxl", sdxl)[0].ok
