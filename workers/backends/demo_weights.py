"""Tiny random-weight Stable Diffusion pipelines, built offline.

They stand in for real weights in tests and in demo deployments that have
none: same pipeline classes, same component types, same image and latent
shapes (the VAE keeps its scale factor of 8), but a few channels per layer,
so a 1024*1024 SDXL image takes seconds on a CPU. Their images are noise.

The pipeline is saved with ``save_pretrained`` and loaded back through the
ordinary ``from_pretrained`` path, exactly as real weights are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from transformers import CLIPTokenizer

DemoKind = Literal["sd15", "sdxl"]

# Bump when the architecture below changes, so cached builds are replaced.
_BUILD_VERSION = "1"
_MARKER = ".synthgate-demo"
_SEED = 0

# Channel widths a fortieth of the real (320, 640, 1280, 1280); four levels so
# the UNet downsamples latents by 8 as in SD1.5.
_UNET_CHANNELS = (8, 16, 32, 32)
_VAE_CHANNELS = (8, 16, 32, 32)
_NORM_GROUPS = 4
_TEXT_HIDDEN = 32
_MAX_TOKENS = 77
_SOT, _EOT = "<|startoftext|>", "<|endoftext|>"

# Attention only at the deepest level: attention at 64x64 latents makes a
# step hundreds of times slower on a CPU, and the test shapes do not need it.
_DOWN_BLOCKS = ("DownBlock2D", "DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D")
_UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D")

# Scheduler configs as in the real runwayml / stabilityai repos.
_SCHEDULER_COMMON: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
}


def build_demo_pipeline(kind: DemoKind, cache_dir: Path) -> Path:
    """Build (once) the demo pipeline of ``kind`` under ``cache_dir/<kind>``.

    Returns the folder to hand to ``from_pretrained``. A complete folder
    already there is returned as is; concurrent builders each build into a
    private sibling and the first rename wins.
    """
    if kind not in ("sd15", "sdxl"):
        raise ValueError(f"unknown demo pipeline kind: {kind!r}")
    target = Path(cache_dir) / kind
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-building-", dir=target.parent))
    # mkdtemp makes it 0700; the cache may be built by one user and read by another.
    staging.chmod(0o755)
    try:
        _save_quietly(_build(kind), staging)
        _write_tokenizer_files(staging, kind)
        (staging / _MARKER).write_text(_BUILD_VERSION)
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_complete(folder: Path) -> bool:
    marker = folder / _MARKER
    return marker.is_file() and marker.read_text().strip() == _BUILD_VERSION


def _move_into_place(staging: Path, target: Path) -> None:
    if target.exists() and not _is_complete(target):
        # A stale or foreign folder: move it aside atomically so a racing
        # builder never sees half of it, then delete it.
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}-stale-", dir=target.parent))
        # FileNotFoundError: another builder moved it first.
        with contextlib.suppress(FileNotFoundError):
            os.rename(target, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(staging, target)
    except OSError:
        # Another process renamed its build in first; use that one.
        if not _is_complete(target):
            raise


def _save_quietly(pipe: DiffusionPipeline, folder: Path) -> None:
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Writing model shards" bar per text encoder; the
    # caller logs one line about the demo weights instead.
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        pipe.save_pretrained(folder, safe_serialization=True)
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def _build(kind: DemoKind) -> DiffusionPipeline:
    import torch

    # fork_rng keeps the caller's global RNG untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        return _build_sd15() if kind == "sd15" else _build_sdxl()


def _build_sd15() -> DiffusionPipeline:
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    unet = _unet(sample_size=64, cross_attention_dim=_TEXT_HIDDEN, attention_head_dim=4)
    return StableDiffusionPipeline(
        vae=_vae(sample_size=512, scaling_factor=0.18215, force_upcast=False),
        text_encoder=CLIPTextModel(_text_config(pad_token_id=_vocab()[_EOT])),
        tokenizer=_tokenizer(pad_token=_EOT),
        unet=unet,
        scheduler=PNDMScheduler(**_SCHEDULER_COMMON, set_alpha_to_one=False, skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl() -> DiffusionPipeline:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    addition_time_embed_dim = 8
    unet = _unet(
        sample_size=128,
        # The UNet sees both encoders' hidden states, concatenated.
        cross_attention_dim=2 * _TEXT_HIDDEN,
        attention_head_dim=(2, 4, 8, 8),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=addition_time_embed_dim,
        # Six micro-conditioning numbers (sizes and crop) plus the pooled
        # embedding of the second text encoder.
        projection_class_embeddings_input_dim=6 * addition_time_embed_dim + _TEXT_HIDDEN,
    )
    scheduler = EulerDiscreteScheduler(
        **_SCHEDULER_COMMON,
        interpolation_type="linear",
        use_karras_sigmas=False,
    )
    return StableDiffusionXLPipeline(
        vae=_vae(sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        text_encoder=CLIPTextModel(_text_config(pad_token_id=0)),
        text_encoder_2=CLIPTextModelWithProjection(
            _text_config(pad_token_id=0, hidden_act="gelu", projection_dim=_TEXT_HIDDEN)
        ),
        tokenizer=_tokenizer(pad_token=_EOT),
        tokenizer_2=_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def _unet(**overrides: Any) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        down_block_types=_DOWN_BLOCKS,
        up_block_types=_UP_BLOCKS,
        block_out_channels=_UNET_CHANNELS,
        layers_per_block=1,
        norm_num_groups=_NORM_GROUPS,
        **overrides,
    )


def _vae(sample_size: int, scaling_factor: float, force_upcast: bool) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=_VAE_CHANNELS,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=_NORM_GROUPS,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
        force_upcast=force_upcast,
        # Self-attention over all 128*128 latents would dominate the decode.
        mid_block_add_attention=False,
    )


def _text_config(
    pad_token_id: int, hidden_act: str = "quick_gelu", projection_dim: int = 32
) -> Any:
    from transformers import CLIPTextConfig

    vocab_size = len(_vocab())
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=_TEXT_HIDDEN,
        intermediate_size=4 * _TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_MAX_TOKENS,
        hidden_act=hidden_act,
        projection_dim=projection_dim,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=pad_token_id,
    )


def _tokenizer(pad_token: str) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as folder:
        _write_vocab(Path(folder))
        return CLIPTokenizer.from_pretrained(
            folder, model_max_length=_MAX_TOKENS, pad_token=pad_token
        )


def _write_tokenizer_files(pipeline_dir: Path, kind: DemoKind) -> None:
    # transformers 5 saves only tokenizer.json; older releases' slow
    # CLIPTokenizer needs vocab.json and merges.txt, as the real repos have.
    for name in ("tokenizer", "tokenizer_2") if kind == "sdxl" else ("tokenizer",):
        _write_vocab(pipeline_dir / name)


def _write_vocab(folder: Path) -> None:
    (folder / "vocab.json").write_text(json.dumps(_vocab(), ensure_ascii=False), encoding="utf-8")
    # No merges: every word is spelled out byte by byte, which is enough.
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def _vocab() -> dict[str, int]:
    """CLIP's vocabulary layout, cut to its first 512 entries plus the specials."""
    chars = _byte_chars()
    vocab = {char: i for i, char in enumerate(chars)}
    vocab.update({f"{char}</w>": len(chars) + i for i, char in enumerate(chars)})
    vocab[_SOT] = len(vocab)
    vocab[_EOT] = len(vocab)
    return vocab


def _byte_chars() -> list[str]:
    """GPT-2's bytes_to_unicode map: one printable character per byte value."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    # Bytes without a printable glyph are shifted past 255, in byte order.
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(code) for code in printable] + [chr(256 + i) for i in range(len(others))]
