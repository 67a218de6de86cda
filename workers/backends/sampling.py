"""Running a loaded SD1.5 / SDXL pipeline: one task's n images, or a mixed batch.

:func:`call_pipeline` is the plain diffusers call for the n images of one task.
:func:`make_images` runs images of *different* tasks as one batch: each image
keeps its own prompt, negative prompt, seed and guidance scale. diffusers'
pipelines take one guidance scale per call, so this is a small denoising loop
over the pipeline's own components (``encode_prompt``, ``prepare_latents``,
the scheduler, the UNet, the VAE) that applies classifier-free guidance per
sample, and otherwise does what the pipeline does: an image made here equals,
within float rounding, the same image made alone by :func:`call_pipeline`.

Imports only torch and diffusers (lazily), so ``bench/gpu.py`` runs it on a
machine that has nothing else of synthgate's dependencies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

StepHook = Callable[[int, int], None]
"""Called as ``hook(done, total)`` after each denoising step."""


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One image of a mixed batch: what to draw, with which seed and guidance scale."""

    prompt: str
    negative_prompt: str
    scale: float
    seed: int


def generators(pipe: DiffusionPipeline, seeds: Sequence[int]) -> list[torch.Generator]:
    """One generator per image, seeded on the pipeline's device."""
    import torch

    return [torch.Generator(pipe.device).manual_seed(seed) for seed in seeds]


def call_pipeline(
    pipe: DiffusionPipeline,
    *,
    prompt: str,
    negative_prompt: str,
    generators: list[torch.Generator],
    width: int,
    height: int,
    steps: int,
    scale: float,
    on_step: StepHook | None = None,
) -> np.ndarray:
    """The n images of one prompt in one diffusers call, n = ``len(generators)``.

    Returns float pixels in [0, 1], shape (images, height, width, 3).
    """
    result = pipe(
        prompt=prompt,
        negative_prompt=negative_prompt or None,
        num_images_per_prompt=len(generators),
        generator=generators,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=scale,
        # numpy, not PIL, so non-finite pixels can be caught before the
        # uint8 conversion turns them into plausible-looking values.
        output_type="np",
        callback_on_step_end=_step_callback(on_step) if on_step else None,
    )
    images: np.ndarray = result.images
    return images


def make_images(
    pipe: DiffusionPipeline,
    specs: Sequence[ImageSpec],
    *,
    width: int,
    height: int,
    steps: int,
    on_step: StepHook | None = None,
) -> np.ndarray:
    """The images of ``specs`` in one batched denoising loop, guidance per image.

    Returns float pixels in [0, 1], shape (len(specs), height, width, 3), in order.
    """
    import torch

    if not specs:
        raise ValueError("make_images needs at least one image")
    # diffusers turns guidance off at a scale <= 1, which is the same as a scale of 1.
    scales = [spec.scale if spec.scale > 1 else 1.0 for spec in specs]
    guided = any(scale > 1 for scale in scales)
    with torch.no_grad():
        embeds, added = _conditioning(pipe, specs, width, height, guided)
        gens = generators(pipe, [spec.seed for spec in specs])
        # Timesteps first: they set the scheduler's init_noise_sigma that scales the latents.
        timesteps = _timesteps(pipe, steps)
        latents = pipe.prepare_latents(
            len(specs), pipe.unet.config.in_channels, height, width, embeds.dtype, pipe.device, gens
        )
        scale = torch.tensor(scales, device=pipe.device, dtype=latents.dtype).view(-1, 1, 1, 1)
        latents = _denoise(
            pipe, latents, embeds, added, scale if guided else None, timesteps, gens, on_step
        )
        return _decode(pipe, latents)


def _conditioning(
    pipe: DiffusionPipeline, specs: Sequence[ImageSpec], width: int, height: int, guided: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """Text embeddings for the UNet ([negatives; prompts] when guided), and SDXL's extras."""
    import torch

    prompts = [spec.prompt for spec in specs]
    negatives = [spec.negative_prompt for spec in specs]
    if not _is_sdxl(pipe):
        positive, negative = pipe.encode_prompt(prompts, pipe.device, 1, guided, negatives)
        return (torch.cat([negative, positive]) if guided else positive), None
    positive, negative, pooled, negative_pooled = pipe.encode_prompt(
        prompt=prompts,
        device=pipe.device,
        do_classifier_free_guidance=guided,
        negative_prompt=negatives,
    )
    if guided and pipe.config.force_zeros_for_empty_prompt:
        # Alone, an empty negative prompt is passed as None, which SDXL encodes as zeros.
        empty = torch.tensor([not text for text in negatives], device=negative.device)
        negative = torch.where(empty.view(-1, 1, 1), 0.0, negative)
        negative_pooled = torch.where(empty.view(-1, 1), 0.0, negative_pooled)
    time_ids = pipe._get_add_time_ids(
        (height, width),
        (0, 0),
        (height, width),
        dtype=positive.dtype,
        text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim,
    ).to(pipe.device)
    rows = 2 * len(specs) if guided else len(specs)
    added = {
        "text_embeds": torch.cat([negative_pooled, pooled]) if guided else pooled,
        "time_ids": time_ids.repeat(rows, 1),
    }
    return (torch.cat([negative, positive]) if guided else positive), added


def _timesteps(pipe: DiffusionPipeline, steps: int) -> torch.Tensor:
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=pipe.device)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    timesteps: torch.Tensor = scheduler.timesteps
    return timesteps


def _denoise(
    pipe: DiffusionPipeline,
    latents: torch.Tensor,
    embeds: torch.Tensor,
    added: dict[str, torch.Tensor] | None,
    scale: torch.Tensor | None,
    timesteps: torch.Tensor,
    gens: list[torch.Generator],
    on_step: StepHook | None,
) -> torch.Tensor:
    """The pipeline's denoising loop, with classifier-free guidance per sample."""
    import torch

    scheduler = pipe.scheduler
    extra = pipe.prepare_extra_step_kwargs(gens, 0.0)
    for done, t in enumerate(timesteps, start=1):
        model_input = torch.cat([latents] * 2) if scale is not None else latents
        model_input = scheduler.scale_model_input(model_input, t)
        # The same arguments as the pipeline's call, so a compiled UNet reuses its graphs.
        noise = pipe.unet(
            model_input,
            t,
            encoder_hidden_states=embeds,
            timestep_cond=None,
            cross_attention_kwargs=None,
            added_cond_kwargs=added,
            return_dict=False,
        )[0]
        if scale is not None:
            uncond, text = noise.chunk(2)
            noise = uncond + scale * (text - uncond)
        latents = scheduler.step(noise, t, latents, **extra, return_dict=False)[0]
        if on_step is not None:
            on_step(done, len(timesteps))
    return latents


def _decode(pipe: DiffusionPipeline, latents: torch.Tensor) -> np.ndarray:
    """Latents to float pixels, upcasting the VAE where its config says fp16 overflows."""
    import torch

    vae = pipe.vae
    upcast = _is_sdxl(pipe) and vae.dtype == torch.float16 and vae.config.force_upcast
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        latents = latents.to(vae.dtype) / vae.config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    if getattr(pipe, "watermark", None) is not None:
        image = pipe.watermark.apply_watermark(image)
    images: np.ndarray = pipe.image_processor.postprocess(image, output_type="np")
    return images


def _is_sdxl(pipe: DiffusionPipeline) -> bool:
    return hasattr(pipe, "text_encoder_2")


def _step_callback(on_step: StepHook) -> Callable[..., dict[str, Any]]:
    def callback(
        pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        # num_timesteps, not the requested steps: PNDM runs one step more.
        on_step(step + 1, pipe.num_timesteps)
        return callback_kwargs

    return callback
