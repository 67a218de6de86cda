"""Pipelines for bench/gpu.py: the real SD1.5 / SDXL architectures with random weights.

No hub is reachable, and the architecture, not the weights, sets the speed. The
models are built from the configs in sd_configs.py directly on the target
device (random initialisation on a GPU takes seconds, on a CPU minutes for
SDXL), then cast. The tokenizers are the offline ones of the demo pipelines.
``tiny`` builds the demo pipelines instead, for the smoke run on a CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sd_configs as configs

from workers.backends.demo_weights import build_demo_pipeline

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

_SEED = 0


def build_pipeline(
    kind: str, tiny: bool, device: str, dtype: torch.dtype, demo_dir: Path
) -> DiffusionPipeline:
    """The ``kind`` pipeline ("sd15" or "sdxl") on ``device`` in ``dtype``, progress bars off."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = build_demo_pipeline(kind, demo_dir)  # type: ignore[arg-type]
    pipe: DiffusionPipeline
    if tiny:
        cls = StableDiffusionPipeline if kind == "sd15" else StableDiffusionXLPipeline
        pipe = cls.from_pretrained(folder)
    else:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(_SEED)
            pipe = _real_sd15(folder) if kind == "sd15" else _real_sdxl(folder)
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def use_fp16_safe_vae(pipe: DiffusionPipeline, tiny: bool) -> None:
    """Swap in a VAE with the fp16-safe config, as SYNTHGATE_SDXL_VAE_WEIGHTS_DIR does.

    Only SDXL's VAE needs it; SD1.5's pipeline decodes in fp16 already.
    """
    import torch
    from diffusers import AutoencoderKL

    if not hasattr(pipe, "text_encoder_2"):
        return
    config = {**pipe.vae.config, "force_upcast": False} if tiny else configs.SDXL_VAE_FP16_FIX
    device, dtype = pipe.vae.device, pipe.vae.dtype
    with torch.device(device):
        vae = AutoencoderKL.from_config(config)
    pipe.vae = vae.to(device=device, dtype=dtype)


def _real_sd15(folder: Path) -> DiffusionPipeline:
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    return StableDiffusionPipeline(
        vae=AutoencoderKL(**configs.SD15_VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**configs.CLIP_L)),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=UNet2DConditionModel(**configs.SD15_UNET),
        scheduler=PNDMScheduler.from_config(configs.SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _real_sdxl(folder: Path) -> DiffusionPipeline:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    return StableDiffusionXLPipeline(
        vae=AutoencoderKL(**configs.SDXL_VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**configs.CLIP_L)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**configs.CLIP_BIG_G)),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        unet=UNet2DConditionModel(**configs.SDXL_UNET),
        scheduler=EulerDiscreteScheduler.from_config(configs.SDXL_SCHEDULER),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
