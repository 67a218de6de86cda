"""The local Stable Diffusion backend: diffusers pipelines in this worker process.

Pipelines are loaded once per process and kept on the backend (the explicit
process-level cache of loaded models), then sped up once
(:mod:`workers.backends.optimizations`: fused QKV, channels_last, torch.compile
with a warm-up). torch and diffusers are imported only when a pipeline is first
needed, so importing this module stays cheap.

Besides a task's n images in one call (:meth:`DiffusersBackend.generate`), the
backend runs several tasks of one model, size and steps as one batch
(:meth:`DiffusersBackend.generate_batch`), each image with its own prompt,
negative prompt, seed and guidance scale.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast, get_args

from taskcore.contract import GenerationRequest, ImageOutcome
from workers.backends.batching import check_batchable, image_specs
from workers.backends.demo_weights import build_demo_pipeline
from workers.backends.optimizations import PipelineOptions, optimize_pipeline
from workers.backends.sampling import ImageSpec, StepHook, call_pipeline, generators, make_images

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    from taskcore.settings import Settings

__all__ = [
    "ALGO_ERROR",
    "IMAGE_FAILED_MESSAGE",
    "NON_FINITE_MESSAGE",
    "DiffusersBackend",
    "StepHook",
    "kind_for_model",
]

logger = logging.getLogger("synthgate.workers.diffusion")

PipelineKind = Literal["sd15", "sdxl"]

# DashScope's code for a failure inside the model; the message tells which.
ALGO_ERROR = "InternalError.Algo"
NON_FINITE_MESSAGE = "the model produced NaN or infinite pixel values"
# A pipeline error's text (paths, device details) goes to the log, never to the tenant.
IMAGE_FAILED_MESSAGE = "image generation failed"

_MODEL_KINDS: Mapping[str, PipelineKind] = {
    "stable-diffusion-xl": "sdxl",
    "stable-diffusion-v1.5": "sd15",
}


def kind_for_model(model: str) -> PipelineKind:
    """The pipeline kind that serves a DashScope model name."""
    try:
        return _MODEL_KINDS[model]
    except KeyError:
        raise ValueError(f"no local pipeline serves model {model!r}") from None


class DiffusersBackend:
    """Makes images with Stable Diffusion 1.5 / XL pipelines on a GPU or CPU.

    ``weights`` maps each served pipeline to a diffusers folder, or to None for
    tiny random demo weights; a pipeline is named by its kind (``sd15``, ``sdxl``), or,
    for a model of the catalog with weights of its own (a company fine-tune), by the
    model's name with its kind in ``families`` (built under ``demo_cache_dir``; images are
    noise). ``device`` is "auto" (CUDA when present), "cuda[:i]" or "cpu";
    CUDA runs in fp16, the CPU in fp32. ``options`` say how pipelines are sped
    up (default: no torch.compile); ``sdxl_vae_dir`` is an fp16-safe SDXL VAE
    (e.g. sdxl-vae-fp16-fix) that replaces the pipeline's own.
    """

    def __init__(
        self,
        weights: Mapping[str, Path | None],
        demo_cache_dir: Path,
        device: str = "auto",
        options: PipelineOptions | None = None,
        sdxl_vae_dir: Path | None = None,
        families: Mapping[str, str] | None = None,
    ) -> None:
        self._families = dict(families or {})
        unknown = {name for name in weights if self._family(name) not in get_args(PipelineKind)}
        if unknown:
            raise ValueError(f"unknown pipeline kinds: {sorted(unknown)}")
        self._weights = dict(weights)
        self._demo_cache_dir = Path(demo_cache_dir)
        self._device = device
        self.options = options or PipelineOptions()
        self._sdxl_vae_dir = sdxl_vae_dir
        self._pipelines: dict[str, DiffusionPipeline] = {}
        self._load_lock = threading.Lock()
        # A pipeline keeps per-call state (scheduler timesteps), so one call at a time.
        self._run_locks = {kind: threading.Lock() for kind in self._weights}
        for kind, path in self._weights.items():
            if path is None:
                logger.warning(
                    "NO WEIGHTS CONFIGURED FOR %s: using tiny RANDOM demo weights from %s. "
                    "Its images will be noise, not pictures.",
                    kind,
                    self._demo_cache_dir / kind,
                )

    def _family(self, name: str) -> str:
        """The pipeline kind of pipeline ``name`` (a kind itself, or a fine-tune's name)."""
        return self._families.get(name, name)

    @classmethod
    def from_settings(cls, settings: Settings) -> DiffusersBackend:
        """The backend that ``settings`` describe (weights, device, speed options)."""
        options = PipelineOptions(
            compile=settings.torch_compile,
            compile_mode=settings.compile_mode,
            channels_last=settings.channels_last,
            fuse_qkv=settings.fuse_qkv,
            max_batch=settings.max_batch,
        )
        weights: dict[str, Path | None] = dict(settings.weights_dirs())
        families: dict[str, str] = {}
        for spec in settings.catalog.models.values():
            if spec.local and spec.weights is not None:
                weights[spec.name], families[spec.name] = spec.weights, spec.family
        return cls(
            weights,
            settings.demo_weights_dir,
            settings.device,
            options=options,
            sdxl_vae_dir=settings.sdxl_vae_weights_dir,
            families=families,
        )

    @property
    def kinds(self) -> frozenset[str]:
        """The pipeline kinds this backend serves."""
        return frozenset(self._weights)

    def load(self, kind: str) -> DiffusionPipeline:
        """The pipeline of ``kind``, loaded on first use and kept for the process."""
        if kind not in self._weights:
            raise ValueError(f"no pipeline configured for kind {kind!r}")
        with self._load_lock:
            pipe = self._pipelines.get(kind)
            if pipe is None:
                pipe = self._pipelines[kind] = self._load_uncached(kind)
            return pipe

    def generate(
        self,
        kind: str,
        request: GenerationRequest,
        on_step: StepHook | None = None,
        indexes: Sequence[int] | None = None,
    ) -> list[ImageOutcome]:
        """Make the request's n images (or those of ``indexes``, when a previous attempt
        stored the others) in one batched call; image i uses seed + i.

        If the batch fails (e.g. out of memory), the images are made one by
        one and each failure is recorded on its own image. ``on_step`` then
        runs through the steps once per image.
        """
        wanted = list(range(request.n) if indexes is None else indexes)
        if not wanted:
            return []
        pipe = self.load(kind)
        seeds = [request.seed + index for index in wanted]
        with self._run_locks[kind]:
            try:
                images = self._run_pipeline(pipe, generators(pipe, seeds), request, on_step)
            except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError too
                logger.warning(
                    "batch of %d %s images failed, retrying one by one: %s", len(wanted), kind, exc
                )
            else:
                return [_outcome(index, image) for index, image in zip(wanted, images, strict=True)]
            # Outside the except block, so the failed call's tensors are already freed.
            _release_cached_memory()
            return [self._generate_one(pipe, request, index, on_step) for index in wanted]

    def generate_batch(
        self,
        kind: str,
        requests: Sequence[GenerationRequest],
        on_step: StepHook | None = None,
        task_steps: Sequence[StepHook | None] | None = None,
    ) -> list[list[ImageOutcome]]:
        """Several tasks of one model, size and steps as one batch; outcomes per task.

        Each image keeps its task's prompt, negative prompt, guidance scale
        and seed (seed + i), and equals what the task alone would make. Calls
        hold at most ``options.max_batch`` images (more are split across
        calls, ``on_step`` running through the steps once per call). If a call
        fails, every task is made on its own, as :meth:`generate` does; a task
        with non-finite pixels is made again on its own. A task made alone
        reports its steps to its hook of ``task_steps`` (default: ``on_step``).
        Raises ValueError for tasks that cannot share a batch.
        """
        check_batchable(requests)
        first = requests[0]
        if _MODEL_KINDS.get(first.model, self._family(kind)) != self._family(kind):
            raise ValueError(f"model {first.model!r} is not served by the {kind!r} pipeline")
        alone = list(task_steps) if task_steps is not None else [on_step] * len(requests)
        pipe = self.load(kind)
        specs = image_specs(requests)
        size = self.options.max_batch
        images: list[np.ndarray] | None = None
        with self._run_locks[kind]:
            try:
                images = [
                    image
                    for start in range(0, len(specs), size)
                    for image in self._run_batch(pipe, specs[start : start + size], first, on_step)
                ]
            except RuntimeError as exc:
                logger.warning(
                    "batch of %d %s tasks failed, making each alone: %s", len(requests), kind, exc
                )
        if images is None:
            # Outside the except block, so the failed call's tensors are already freed.
            _release_cached_memory()
            return [self.generate(kind, r, hook) for r, hook in zip(requests, alone, strict=True)]
        made = _split(requests, images)
        if len(requests) > 1:
            # Non-finite pixels may be the batch's doing (a larger call overflowing in fp16).
            for i, outcomes in enumerate(made):
                if any(o.message == NON_FINITE_MESSAGE for o in outcomes):
                    logger.warning("task %d of a %s batch made NaNs; making it alone", i, kind)
                    made[i] = self.generate(kind, requests[i], alone[i])
        return made

    def _run_batch(
        self,
        pipe: DiffusionPipeline,
        specs: Sequence[ImageSpec],
        shape: GenerationRequest,
        on_step: StepHook | None,
    ) -> np.ndarray:
        """One pipeline call for ``specs`` at ``shape``'s size and steps (tests override it)."""
        return make_images(
            pipe, specs, width=shape.width, height=shape.height, steps=shape.steps, on_step=on_step
        )

    def _generate_one(
        self,
        pipe: DiffusionPipeline,
        request: GenerationRequest,
        index: int,
        on_step: StepHook | None,
    ) -> ImageOutcome:
        try:
            images = self._run_pipeline(
                pipe, generators(pipe, [request.seed + index]), request, on_step
            )
        except RuntimeError as exc:
            logger.warning("image %d of a %s request failed: %s", index, request.model, exc)
            outcome = ImageOutcome(index, code=ALGO_ERROR, message=IMAGE_FAILED_MESSAGE)
        else:
            return _outcome(index, images[0])
        _release_cached_memory()
        return outcome

    def _run_pipeline(
        self,
        pipe: DiffusionPipeline,
        generators: list[torch.Generator],
        request: GenerationRequest,
        on_step: StepHook | None,
    ) -> np.ndarray:
        """One pipeline call making ``len(generators)`` images of the prompt.

        Returns float pixels in [0, 1], shape (images, height, width, 3).
        Overridden in tests to simulate failures.
        """
        return call_pipeline(
            pipe,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            generators=generators,
            width=request.width,
            height=request.height,
            steps=request.steps,
            scale=request.scale,
            on_step=on_step,
        )

    def _load_uncached(self, kind: str) -> DiffusionPipeline:
        """Load, place and speed up one pipeline, logging each step and its time (a real
        SDXL takes tens of seconds to read, minutes to compile)."""
        import torch

        started = time.monotonic()
        device = self._resolve_device()
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        family = self._family(kind)
        source = "configured weights" if self._weights[kind] is not None else "demo weights"
        logger.info("%s pipeline (%s): loading %s as %s on %s", kind, family, source, dtype, device)
        step = time.monotonic()
        path = self._weights_path(kind)
        if self._weights[kind] is None:
            logger.info("%s pipeline: demo weights ready in %s (%.1fs)", kind, path, _since(step))
        step = time.monotonic()
        pipe = self._from_pretrained(family, path, dtype)
        logger.info("%s pipeline: read from %s in %.1fs", kind, path, _since(step))
        step = time.monotonic()
        if pipe.dtype != dtype:
            pipe.to(dtype=dtype)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        logger.info("%s pipeline: moved to %s (%s) in %.1fs", kind, device, dtype, _since(step))
        _warn_if_vae_upcasts(pipe, family)
        step = time.monotonic()
        optimize_pipeline(pipe, family, self.options)
        logger.info("%s pipeline: sped up in %.1fs", kind, _since(step))
        logger.info(
            "loaded %s pipeline from %s on %s (%s) in %.1fs",
            kind,
            path,
            device,
            dtype,
            _since(started),
        )
        return pipe

    def _from_pretrained(self, family: str, path: Path, dtype: torch.dtype) -> DiffusionPipeline:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        # diffusers 0.42 deprecates torch_dtype= for dtype=, which older releases
        # ignore; the caller casts afterwards only then (the cast warns, so not always).
        if family == "sd15":
            return StableDiffusionPipeline.from_pretrained(
                path, dtype=dtype, safety_checker=None, requires_safety_checker=False
            )
        return StableDiffusionXLPipeline.from_pretrained(path, dtype=dtype, **self._sdxl_vae(dtype))

    def _sdxl_vae(self, dtype: torch.dtype) -> dict[str, object]:
        """``from_pretrained`` arguments that swap in the configured SDXL VAE, if any."""
        if self._sdxl_vae_dir is None:
            return {}
        from diffusers import AutoencoderKL

        return {"vae": AutoencoderKL.from_pretrained(self._sdxl_vae_dir, dtype=dtype)}

    def _weights_path(self, kind: str) -> Path:
        path = self._weights[kind]
        if path is not None:
            return Path(path)
        # __init__ accepted only known kinds.
        return build_demo_pipeline(cast(PipelineKind, self._family(kind)), self._demo_cache_dir)

    def _resolve_device(self) -> str:
        import torch

        if self._device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self._device


def _since(started: float) -> float:
    return time.monotonic() - started


def _split(
    requests: Sequence[GenerationRequest], images: list[np.ndarray]
) -> list[list[ImageOutcome]]:
    """Hand the batch's images back to their tasks, in order, indexed per task."""
    outcomes: list[list[ImageOutcome]] = []
    offset = 0
    for request in requests:
        outcomes.append([_outcome(i, images[offset + i]) for i in range(request.n)])
        offset += request.n
    return outcomes


def _warn_if_vae_upcasts(pipe: DiffusionPipeline, kind: str) -> None:
    import torch

    if kind == "sdxl" and pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast:
        logger.warning(
            "the SDXL VAE overflows in fp16, so it decodes in fp32 (slower); set "
            "SYNTHGATE_SDXL_VAE_WEIGHTS_DIR to an fp16-safe VAE such as sdxl-vae-fp16-fix"
        )


def _outcome(index: int, image: np.ndarray) -> ImageOutcome:
    import numpy as np

    if not np.isfinite(image).all():
        return ImageOutcome(index, code=ALGO_ERROR, message=NON_FINITE_MESSAGE)
    return ImageOutcome(index, png=_encode_png(image))


def _encode_png(image: np.ndarray) -> bytes:
    import numpy as np
    from PIL import Image

    # The same rounding as diffusers' numpy_to_pil.
    pixels = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    # Level 1: much faster than the default 6, and the files go to storage once.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _release_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
