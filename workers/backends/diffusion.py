"""The local Stable Diffusion backend: diffusers pipelines in this worker process.

Pipelines are loaded once per process and kept on the backend (the explicit
process-level cache of loaded models). torch and diffusers are imported only
when a pipeline is first needed, so importing this module stays cheap.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from gateway.jobs import GenerationRequest, ImageOutcome
from workers.backends.demo_weights import build_demo_pipeline

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

logger = logging.getLogger("synthgate.workers.diffusion")

PipelineKind = Literal["sd15", "sdxl"]
StepHook = Callable[[int, int], None]
"""Called as ``hook(done, total)`` after each denoising step."""

# DashScope's code for a failure inside the model; the message tells which.
ALGO_ERROR = "InternalError.Algo"
NON_FINITE_MESSAGE = "the model produced NaN or infinite pixel values"

_MODEL_KINDS: Mapping[str, PipelineKind] = {
    "stable-diffusion-xl": "sdxl",
    "stable-diffusion-v1.5": "sd15",
}
_MAX_MESSAGE = 300


def kind_for_model(model: str) -> PipelineKind:
    """The pipeline kind that serves a DashScope model name."""
    try:
        return _MODEL_KINDS[model]
    except KeyError:
        raise ValueError(f"no local pipeline serves model {model!r}") from None


class DiffusersBackend:
    """Makes images with Stable Diffusion 1.5 / XL pipelines on a GPU or CPU.

    ``weights`` maps each served kind to a diffusers folder, or to None for
    tiny random demo weights (built under ``demo_cache_dir``; images are
    noise). ``device`` is "auto" (CUDA when present), "cuda[:i]" or "cpu";
    CUDA runs in fp16, the CPU in fp32.
    """

    def __init__(
        self, weights: Mapping[str, Path | None], demo_cache_dir: Path, device: str = "auto"
    ) -> None:
        unknown = set(weights) - set(get_args(PipelineKind))
        if unknown:
            raise ValueError(f"unknown pipeline kinds: {sorted(unknown)}")
        self._weights = dict(weights)
        self._demo_cache_dir = Path(demo_cache_dir)
        self._device = device
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
        self, kind: str, request: GenerationRequest, on_step: StepHook | None = None
    ) -> list[ImageOutcome]:
        """Make the request's n images in one batched call; image i uses seed + i.

        If the batch fails (e.g. out of memory), the images are made one by
        one and each failure is recorded on its own image. ``on_step`` then
        runs through the steps once per image.
        """
        pipe = self.load(kind)
        with self._run_locks[kind]:
            try:
                images = self._run_pipeline(
                    pipe, _generators(pipe, request.seeds()), request, on_step
                )
            except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError too
                logger.warning(
                    "batch of %d %s images failed, retrying one by one: %s", request.n, kind, exc
                )
            else:
                return [_outcome(index, image) for index, image in enumerate(images)]
            # Outside the except block, so the failed call's tensors are already freed.
            _release_cached_memory()
            return [self._generate_one(pipe, request, index, on_step) for index in range(request.n)]

    def _generate_one(
        self,
        pipe: DiffusionPipeline,
        request: GenerationRequest,
        index: int,
        on_step: StepHook | None,
    ) -> ImageOutcome:
        try:
            images = self._run_pipeline(
                pipe, _generators(pipe, [request.seed + index]), request, on_step
            )
        except RuntimeError as exc:
            logger.warning("image %d of a %s request failed: %s", index, request.model, exc)
            outcome = ImageOutcome(
                index, code=ALGO_ERROR, message=_short(f"image generation failed: {exc}")
            )
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
        result = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_images_per_prompt=len(generators),
            generator=generators,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.scale,
            # numpy, not PIL, so non-finite pixels can be caught before the
            # uint8 conversion turns them into plausible-looking values.
            output_type="np",
            callback_on_step_end=_step_callback(on_step) if on_step else None,
        )
        images: np.ndarray = result.images
        return images

    def _load_uncached(self, kind: str) -> DiffusionPipeline:
        import torch
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        started = time.monotonic()
        path = self._weights_path(kind)
        device = self._resolve_device()
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        # diffusers 0.42 deprecates torch_dtype= for dtype=, which older releases
        # ignore; only then cast afterwards (the cast warns, so not always).
        if kind == "sd15":
            pipe = StableDiffusionPipeline.from_pretrained(
                path, dtype=dtype, safety_checker=None, requires_safety_checker=False
            )
        else:
            pipe = StableDiffusionXLPipeline.from_pretrained(path, dtype=dtype)
        if pipe.dtype != dtype:
            pipe.to(dtype=dtype)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        logger.info(
            "loaded %s pipeline from %s on %s (%s) in %.1fs",
            kind,
            path,
            device,
            dtype,
            time.monotonic() - started,
        )
        return pipe

    def _weights_path(self, kind: str) -> Path:
        path = self._weights[kind]
        if path is not None:
            return Path(path)
        # __init__ accepted only known kinds.
        return build_demo_pipeline(cast(PipelineKind, kind), self._demo_cache_dir)

    def _resolve_device(self) -> str:
        import torch

        if self._device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self._device


def _generators(pipe: DiffusionPipeline, seeds: list[int]) -> list[torch.Generator]:
    import torch

    return [torch.Generator(pipe.device).manual_seed(seed) for seed in seeds]


def _step_callback(on_step: StepHook) -> Callable[..., dict[str, Any]]:
    def callback(
        pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        # num_timesteps, not the requested steps: PNDM runs one step more.
        on_step(step + 1, pipe.num_timesteps)
        return callback_kwargs

    return callback


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


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
