"""parse_submit against each model's catalog rules: a table of accepted requests (with
their defaults) and refused ones (with the DashScope-shaped 400 a client gets)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.contracts.dashscope import builtin_catalog, parse_submit
from gateway.edge.errors import InvalidParameter


def _body(model: str, parameters: dict[str, Any] | None = None, **inputs: Any) -> dict[str, Any]:
    return {"model": model, "input": {"prompt": "a cat", **inputs}, "parameters": parameters or {}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # wanx 2.x: n defaults to 4, any side 512..1440, prompt_extend on, watermark off.
        (
            _body("wanx2.1-t2i-turbo"),
            {"size": "1024*1024", "n": 4, "options": {"prompt_extend": True, "watermark": False}},
        ),
        (
            _body("wanx2.1-t2i-plus", {"size": "1440*512", "n": 1, "prompt_extend": False}),
            {"size": "1440*512", "n": 1, "options": {"prompt_extend": False, "watermark": False}},
        ),
        (
            _body("wan2.2-t2i-flash", {"watermark": True}),
            {"options": {"prompt_extend": True, "watermark": True}},
        ),
        # qwen-image: fixed sizes, one image.
        (_body("qwen-image", {"size": "1328*1328"}), {"size": "1328*1328", "n": 1}),
        # wanx-v1: style and a reference image.
        (
            _body(
                "wanx-v1", {"style": "<anime>", "ref_strength": 0.8}, ref_img="https://x.test/a.png"
            ),
            {
                "size": "1024*1024",
                "options": {
                    "style": "<anime>",
                    "ref_img": "https://x.test/a.png",
                    "ref_strength": 0.8,
                    "ref_mode": "repaint",
                },
            },
        ),
        # The Stable Diffusion spec's defaults stay.
        (_body("stable-diffusion-xl"), {"size": "1024*1024", "n": 1, "steps": 50, "scale": 10.0}),
    ],
)
def test_accepted_requests_get_the_models_defaults(
    body: dict[str, Any], expected: dict[str, Any]
) -> None:
    job = parse_submit(body, builtin_catalog())
    for name, value in expected.items():
        assert getattr(job, name) == value, name


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_body("wanx9-t2i"), "Model not exist"),
        (_body("wanx2.1-t2i-turbo", {"size": "1441*1024"}), "each between 512 and 1440"),
        (_body("wanx2.1-t2i-turbo", {"n": 5}), "'parameters.n' must be between 1 and 4"),
        (_body("qwen-image", {"n": 2}), "'parameters.n' must be between 1 and 1"),
        (_body("qwen-image", {"size": "1024*1024"}), "not supported by qwen-image"),
        (_body("wanx2.1-t2i-turbo", {"steps": 30}), "does not take parameters.steps"),
        (
            _body("stable-diffusion-xl", {"prompt_extend": True}),
            "does not take parameters.prompt_extend",
        ),
        (_body("wanx2.1-t2i-turbo", {"prompt_extend": "yes"}), "must be true or false"),
        (_body("wanx-v1", {"style": "<cubism>"}), "'parameters.style' must be one of"),
        (
            _body("wanx-v1", {"ref_strength": 1.5}),
            "'parameters.ref_strength' must be between 0 and 1",
        ),
        (_body("wanx-v1", ref_img="oss://bucket/cat.png"), "http(s) URL"),
        (_body("wanx-v1", ref_img="file:///etc/passwd"), "must be an http(s) URL"),
    ],
)
def test_out_of_rule_fields_get_a_dashscope_400(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_submit(body, builtin_catalog())
    assert caught.value.status_code == 400 and caught.value.code == "InvalidParameter"
    assert message in caught.value.message


def test_the_sdks_upload_header_gets_a_400_naming_what_to_send_instead() -> None:
    headers = {"x-dashscope-ossresourceresolve": "enable"}
    with pytest.raises(InvalidParameter, match="send the image as an http"):
        parse_submit(_body("wanx-v1"), builtin_catalog(), headers)


def test_a_wanx_prompt_is_cut_at_its_character_limit_not_refused() -> None:
    job = parse_submit(
        _body("wanx2.1-t2i-turbo", negative_prompt="n" * 900)
        | {"input": {"prompt": "p" * 900, "negative_prompt": "n" * 900}},
        builtin_catalog(),
    )
    assert (len(job.prompt), len(job.negative_prompt)) == (800, 500)


def test_unknown_fields_no_model_takes_are_ignored_as_dashscope_does() -> None:
    job = parse_submit(_body("wanx2.1-t2i-turbo", {"colour": "red"}), builtin_catalog())
    assert "colour" not in job.options
