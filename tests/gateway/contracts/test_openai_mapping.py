"""OpenAI images requests mapped onto synthgate's jobs, and OpenAI-shaped errors."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.contracts.openai_mapping import error_response, parse_images_request
from gateway.edge.errors import InvalidParameter, Throttling

XL = "stable-diffusion-xl"


def test_openai_fields_become_the_dashscope_job_they_mean() -> None:
    body = {"prompt": "a cat", "n": 2, "size": "512x768", "response_format": "b64_json"}
    wanted = parse_images_request({**body, "seed": 7, "steps": 3, "quality": "hd"}, XL)
    job = wanted.job
    assert (job.model, job.prompt, job.n, job.width, job.height) == (XL, "a cat", 2, 512, 768)
    assert (job.seed, job.steps, wanted.response_format) == (7, 3, "b64_json")


def test_defaults_are_the_settings_model_its_size_one_image_and_urls() -> None:
    wanted = parse_images_request({"prompt": "a cat", "size": "auto"}, "stable-diffusion-v1.5")
    assert (wanted.job.model, wanted.job.size, wanted.job.n) == (
        "stable-diffusion-v1.5",
        "512*512",
        1,
    )
    assert wanted.response_format == "url"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"prompt": ""}, "'prompt' is required"),
        ({"prompt": "x", "n": 5}, "'n' must be an integer from 1 to 4"),
        ({"prompt": "x", "size": "1024*1024"}, "'size' must look like '1024x1024'"),
        ({"prompt": "x", "size": "1792x1024"}, "Size 1792*1024 is not supported"),
        ({"prompt": "x", "model": "dall-e-3"}, "does not exist"),
        ({"prompt": "x", "response_format": "jpeg"}, "'response_format' must be"),
        ({"prompt": "x", "stream": True}, "Streaming is not supported"),
        ({"prompt": "x", "bogus": 1}, "Unrecognized request argument supplied: bogus"),
    ],
)
def test_bad_requests_are_refused_with_a_message_naming_the_field(
    body: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidParameter, match=says.replace("*", r"\*")):
        parse_images_request(body, XL)


def test_errors_keep_their_status_and_headers_in_openais_shape() -> None:
    exc = Throttling("slow down", code="Throttling.RateQuota", headers={"Retry-After": "3"})
    response = error_response(exc)
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert response.body == (
        b'{"error":{"message":"slow down","type":"rate_limit_error","param":null,'
        b'"code":"rate_limit_exceeded"}}'
    )
