"""parse_submit: the spec's defaults, ranges, truncation and size rules."""

from __future__ import annotations

import pytest

from gateway.contracts.dashscope import MAX_SEED, parse_submit, truncate_words
from gateway.edge.errors import InvalidParameter


def _submit(model: str = "stable-diffusion-xl", **params: object) -> dict[str, object]:
    return {"model": model, "input": {"prompt": "a cat"}, "parameters": params}


def test_defaults_follow_the_spec() -> None:
    job = parse_submit({"model": "stable-diffusion-xl", "input": {"prompt": "a cat"}})
    assert (job.width, job.height, job.n, job.steps, job.scale) == (1024, 1024, 1, 50, 10.0)
    assert job.negative_prompt == ""
    assert 0 <= job.seed <= MAX_SEED - 3
    assert parse_submit(_submit("stable-diffusion-v1.5")).size == "512*512"


def test_absent_seed_is_random_and_recorded() -> None:
    seeds = {parse_submit(_submit()).seed for _ in range(20)}
    assert len(seeds) > 1


def test_explicit_values_are_kept() -> None:
    job = parse_submit(_submit(size="512*1024", n=4, steps=40, scale=3, seed=42))
    assert (job.width, job.height, job.n, job.steps, job.scale, job.seed) == (
        512,
        1024,
        4,
        40,
        3.0,
        42,
    )
    assert job.seeds() == [42, 43, 44, 45]


@pytest.mark.parametrize("side", [512, 640, 768, 896, 1024])
def test_every_xl_side_on_the_128_grid_is_allowed(side: int) -> None:
    assert parse_submit(_submit(size=f"{side}*1024")).width == side


def test_integral_float_counts_as_integer_and_float_scale_is_allowed() -> None:
    job = parse_submit(_submit(n=2.0, scale=7.5))
    assert job.n == 2 and job.scale == 7.5


def test_prompt_longer_than_75_words_is_truncated() -> None:
    words = [f"w{i}" for i in range(100)]
    body = {
        "model": "stable-diffusion-xl",
        "input": {"prompt": " ".join(words), "negative_prompt": " ".join(words)},
    }
    job = parse_submit(body)
    assert job.prompt.split() == words[:75]
    assert job.negative_prompt.split() == words[:75]


def test_truncation_keeps_short_prompts_as_written() -> None:
    assert truncate_words("  a  running   cat ") == "a  running   cat"


def test_null_parameters_and_null_negative_prompt_mean_defaults() -> None:
    body = {
        "model": "stable-diffusion-xl",
        "input": {"prompt": "x", "negative_prompt": None},
        "parameters": None,
    }
    assert parse_submit(body).n == 1


def test_error_message_names_the_field_and_the_range() -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_submit(_submit(steps=900))
    assert "parameters.steps" in caught.value.message and "500" in caught.value.message
