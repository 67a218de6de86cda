"""Making a loaded pipeline fast on a GPU: fused QKV, channels_last, VAE slicing,
torch.compile, warm-up.

Applied once per worker process, right after a pipeline loads. Attention is
PyTorch's SDPA either way (diffusers' default processor, and the fused one).
Options that only pay on CUDA (torch.compile with Inductor, cuDNN autotuning)
are skipped on the CPU with a log line, so the tiny demo pipelines of the
tests and of ``make run`` take the same code path.

Imports only torch and diffusers (lazily), like :mod:`workers.backends.sampling`,
so ``bench/gpu.py`` applies exactly the worker's optimizations.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workers.backends.sampling import ImageSpec, call_pipeline, generators, make_images

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

logger = logging.getLogger("synthgate.workers.diffusion")

# Warm-up shapes (width, height) per kind: the default size with one image, then a
# two-image batch (for SDXL, which accepts several sizes, with another width AND
# height), so that the compiled graphs become dynamic in the batch size and image
# size at start-up instead of recompiling in the first task with a new shape.
_WARM_UP_SIZES = {"sd15": ((512, 512), (512, 512)), "sdxl": ((1024, 1024), (896, 768))}
_WARM_UP_STEPS = 2


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """How the worker runs its pipelines; built from settings (docs/gpu-workers.md)."""

    compile: bool = False
    compile_mode: str = "default"
    # "inductor" generates kernels (CUDA only here); "eager" only traces the graphs,
    # which checks on a CPU that the models compile whole (no graph breaks).
    compile_backend: str = "inductor"
    channels_last: bool = True
    fuse_qkv: bool = True
    # The VAE decodes a batch one image at a time: at full resolution a batch gains nothing
    # (on the CPU each image costs more in one) and its memory grows with the batch.
    vae_slicing: bool = True
    max_batch: int = 8

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")


def optimize_pipeline(pipe: DiffusionPipeline, kind: str, options: PipelineOptions) -> set[str]:
    """Apply ``options`` to ``pipe`` in place, warm-up included; returns what was applied.

    A compilation that fails is logged and the pipeline runs uncompiled.
    """
    applied = apply_eager_options(pipe, options)
    if options.compile and not compiles_on(pipe, options):
        logger.info(
            "%s: torch.compile skipped on %s (Inductor is used on CUDA only)", kind, pipe.device
        )
    elif options.compile:
        try:
            compile_pipeline(pipe, kind, options)
        except Exception:
            logger.exception("%s: torch.compile failed; the pipeline runs uncompiled", kind)
        else:
            applied.add("compile")
    logger.info("%s pipeline on %s: %s", kind, pipe.device, ", ".join(sorted(applied)) or "plain")
    return applied


def apply_eager_options(pipe: DiffusionPipeline, options: PipelineOptions) -> set[str]:
    """Everything but compilation: fused QKV, channels_last, VAE slicing, cuDNN autotuning
    on CUDA."""
    import torch

    applied: set[str] = set()
    if pipe.device.type == "cuda":
        # Convolutions dominate: let cuDNN pick the fastest algorithm per shape.
        torch.backends.cudnn.benchmark = True
        applied.add("cudnn_benchmark")
    if options.fuse_qkv:
        pipe.fuse_qkv_projections()
        applied.add("fuse_qkv")
    if options.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        applied.add("channels_last")
    if options.vae_slicing:
        pipe.vae.enable_slicing()
        applied.add("vae_slicing")
    return applied


def compiles_on(pipe: DiffusionPipeline, options: PipelineOptions) -> bool:
    """Whether ``options.compile_backend`` is used on ``pipe``'s device (Inductor: CUDA only)."""
    return bool(pipe.device.type == "cuda" or options.compile_backend != "inductor")


def compile_pipeline(pipe: DiffusionPipeline, kind: str, options: PipelineOptions) -> float:
    """Compile the UNet and VAE decoder in place and warm up; returns the warm-up's seconds.

    On failure the pipeline is left uncompiled and the error raised.
    """
    try:
        _compile(pipe, options)
        return warm_up(pipe, kind)
    except BaseException:
        # Module.compile's only state: without it the modules run eagerly again.
        pipe.unet._compiled_call_impl = None
        pipe.vae.decoder._compiled_call_impl = None
        raise


def warm_up(pipe: DiffusionPipeline, kind: str) -> float:
    """Run the warm-up shapes through both sampling paths; returns the seconds it took.

    With a compiled pipeline this is where compilation happens, at worker start.
    """
    (width, height), (batch_width, batch_height) = _WARM_UP_SIZES[kind]
    started = time.perf_counter()
    call_pipeline(
        pipe,
        prompt="warm-up",
        negative_prompt="",
        generators=generators(pipe, [0]),
        width=width,
        height=height,
        steps=_WARM_UP_STEPS,
        scale=7.0,
    )
    specs = [ImageSpec("warm-up", "", 7.0, 0), ImageSpec("warm-up", "blurry", 5.0, 1)]
    make_images(pipe, specs, width=batch_width, height=batch_height, steps=_WARM_UP_STEPS)
    elapsed = time.perf_counter() - started
    logger.info("%s pipeline warmed up in %.1fs", kind, elapsed)
    return elapsed


def _compile(pipe: DiffusionPipeline, options: PipelineOptions) -> None:
    """Compile the UNet and the VAE decoder in place (each whole: fullgraph)."""
    import torch

    kwargs: dict[str, Any] = {"backend": options.compile_backend, "fullgraph": True}
    if options.compile_backend == "inductor":
        kwargs["mode"] = options.compile_mode
        # 1x1 convolutions as matrix products: faster on tensor cores, per diffusers' guide.
        import torch._inductor.config

        torch._inductor.config.conv_1x1_as_mm = True
    pipe.unet.compile(**kwargs)
    pipe.vae.decoder.compile(**kwargs)
