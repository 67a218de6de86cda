"""The real architectures of Stable Diffusion 1.5 and SDXL base 1.0, as diffusers configs.

Copied from the ``config.json`` files of the stable-diffusion-v1-5 and
stable-diffusion-xl-base-1.0 repositories (keys left at their defaults are
omitted). Models built from them with random weights have the real shapes and
the real speed; ``PARAMETERS`` holds the published parameter counts, which
tests/workers/backends/test_gpu_bench.py checks the configs against.
"""

from __future__ import annotations

from typing import Any

_CLIP_VOCAB = 49408
_SCHEDULER_COMMON: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
}

# CLIP ViT-L/14's text tower: SD1.5's only text encoder and SDXL's first.
CLIP_L: dict[str, Any] = {
    "vocab_size": _CLIP_VOCAB,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "layer_norm_eps": 1e-5,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

# OpenCLIP ViT-bigG/14's text tower with its projection: SDXL's second text encoder.
CLIP_BIG_G: dict[str, Any] = {
    **CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}

_VAE_COMMON: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
}
SD15_VAE: dict[str, Any] = {**_VAE_COMMON, "sample_size": 512, "scaling_factor": 0.18215}
SDXL_VAE: dict[str, Any] = {
    **_VAE_COMMON,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    # The original SDXL VAE overflows in fp16, so the pipeline decodes in fp32.
    "force_upcast": True,
}
# madebyollin/sdxl-vae-fp16-fix: the same architecture, retrained to stay finite in fp16.
SDXL_VAE_FP16_FIX: dict[str, Any] = {**SDXL_VAE, "force_upcast": False}

_UNET_COMMON: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "act_fn": "silu",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
}

SD15_UNET: dict[str, Any] = {
    **_UNET_COMMON,
    "sample_size": 64,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
    "block_out_channels": [320, 640, 1280, 1280],
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
}

SDXL_UNET: dict[str, Any] = {
    **_UNET_COMMON,
    "sample_size": 128,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}

SD15_SCHEDULER: dict[str, Any] = dict(_SCHEDULER_COMMON)  # PNDMScheduler
SDXL_SCHEDULER: dict[str, Any] = {  # EulerDiscreteScheduler
    **_SCHEDULER_COMMON,
    "interpolation_type": "linear",
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}

PARAMETERS: dict[str, int] = {
    "sd15_unet": 859_520_964,
    "sdxl_unet": 2_567_463_684,
    "vae": 83_653_863,
    "clip_l": 123_060_480,
    "clip_big_g": 694_659_840,
}
