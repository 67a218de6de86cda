"""Every bad submit gets a DashScope-shaped error with the right status and code, and no task."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fixtures.stack import Stack
from fixtures.tasks import SUBMIT

XL = "stable-diffusion-xl"
V15 = "stable-diffusion-v1.5"


def _body(model: Any = XL, input_: Any = None, parameters: Any = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "input": input_ or {"prompt": "a cat"}}
    if parameters is not None:
        payload["parameters"] = parameters
    return payload


CASES: list[tuple[str, Any, int, str]] = [
    ("missing model", {"input": {"prompt": "a cat"}}, 400, "BadRequest.EmptyModel"),
    ("empty model", _body(model=""), 400, "BadRequest.EmptyModel"),
    ("model not a string", _body(model=5), 400, "InvalidParameter"),
    ("unknown model", _body(model="stable-diffusion-9"), 400, "InvalidParameter"),
    ("missing input", {"model": XL}, 400, "BadRequest.EmptyInput"),
    ("empty input", {"model": XL, "input": {}}, 400, "BadRequest.EmptyInput"),
    ("input not an object", {"model": XL, "input": "a cat"}, 400, "InvalidParameter"),
    ("empty prompt", _body(input_={"prompt": "  "}), 400, "BadRequest.EmptyInput"),
    ("prompt not a string", _body(input_={"prompt": ["a", "cat"]}), 400, "InvalidParameter"),
    (
        "negative prompt not a string",
        _body(input_={"prompt": "a", "negative_prompt": 3}),
        400,
        "InvalidParameter",
    ),
    ("empty parameters", _body(parameters=""), 400, "BadRequest.EmptyParameters"),
    ("parameters not an object", _body(parameters="n=2"), 400, "InvalidParameter"),
    ("n zero", _body(parameters={"n": 0}), 400, "InvalidParameter"),
    ("n five", _body(parameters={"n": 5}), 400, "InvalidParameter"),
    ("n string", _body(parameters={"n": "2"}), 400, "InvalidParameter"),
    ("n bool", _body(parameters={"n": True}), 400, "InvalidParameter"),
    ("n fractional", _body(parameters={"n": 1.5}), 400, "InvalidParameter"),
    ("steps zero", _body(parameters={"steps": 0}), 400, "InvalidParameter"),
    ("steps 501", _body(parameters={"steps": 501}), 400, "InvalidParameter"),
    ("scale below 1", _body(parameters={"scale": 0.5}), 400, "InvalidParameter"),
    ("scale 16", _body(parameters={"scale": 16}), 400, "InvalidParameter"),
    ("scale string", _body(parameters={"scale": "7"}), 400, "InvalidParameter"),
    ("seed negative", _body(parameters={"seed": -1}), 400, "InvalidParameter"),
    ("seed too big", _body(parameters={"seed": 2**31}), 400, "InvalidParameter"),
    ("size malformed", _body(parameters={"size": "1024x1024"}), 400, "InvalidParameter"),
    ("size not a string", _body(parameters={"size": 1024}), 400, "InvalidParameter"),
    ("xl size off the 128 grid", _body(parameters={"size": "1000*1024"}), 400, "InvalidParameter"),
    ("xl size too small", _body(parameters={"size": "384*512"}), 400, "InvalidParameter"),
    ("xl size too big", _body(parameters={"size": "1152*1024"}), 400, "InvalidParameter"),
    (
        "v1.5 size other than 512",
        _body(model=V15, parameters={"size": "1024*1024"}),
        400,
        "InvalidParameter",
    ),
    ("body a list", [1, 2], 400, "InvalidParameter"),
]


@pytest.mark.parametrize(("name", "payload", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_submit_is_rejected_with_dashscope_error(
    api: httpx.Client, name: str, payload: Any, status: int, code: str
) -> None:
    answer = api.post(SUBMIT, json=payload)
    assert answer.status_code == status, answer.text
    data = answer.json()
    assert data["code"] == code
    assert data["message"]
    assert data["request_id"]
    assert answer.headers["x-request-id"] == data["request_id"]


def _error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    assert answer.json()["request_id"]


def test_body_not_json_is_invalid_parameter(api: httpx.Client) -> None:
    answer = api.post(SUBMIT, content=b"{not json", headers={"Content-Type": "application/json"})
    _error(answer, 400, "InvalidParameter")


def test_empty_body_is_invalid_parameter(api: httpx.Client) -> None:
    _error(api.post(SUBMIT, content=b""), 400, "InvalidParameter")


def test_oversized_body_is_too_large(api: httpx.Client) -> None:
    huge = _body(input_={"prompt": "cat " * 40_000})
    _error(api.post(SUBMIT, json=huge), 413, "BadRequest.TooLarge")


def test_missing_async_header_is_access_denied_not_a_hang(stack: Stack) -> None:
    answer = httpx.post(
        f"{stack.api}{SUBMIT}", json=_body(), headers=stack.headers(async_=False), timeout=5
    )
    _error(answer, 403, "AccessDenied")
    assert "X-DashScope-Async" in answer.json()["message"]


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer sk-wrong", "Basic abc", "sk-no-scheme"]
)
def test_missing_or_wrong_key_is_invalid_api_key(stack: Stack, authorization: str | None) -> None:
    headers = {"X-DashScope-Async": "enable"}
    if authorization is not None:
        headers["Authorization"] = authorization
    answer = httpx.post(f"{stack.api}{SUBMIT}", json=_body(), headers=headers, timeout=5)
    _error(answer, 401, "InvalidApiKey")
    fetch = httpx.get(f"{stack.api}/tasks/x", headers=headers, timeout=5)
    _error(fetch, 401, "InvalidApiKey")


def test_unknown_route_is_dashscope_shaped(api: httpx.Client) -> None:
    _error(api.get("/no/such/route"), 404, "NotFound")


def test_rejected_submits_create_no_tasks(stack: Stack, new_tenant: Any) -> None:
    key = new_tenant()
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=10) as http:
        for _, payload, _, _ in CASES:
            assert http.post(SUBMIT, json=payload).status_code >= 400
        assert http.get("/tasks").json()["total"] == 0


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"page_no": "0"}, "InvalidParameter"),
        ({"page_size": "101"}, "InvalidParameter"),
        ({"page_size": "ten"}, "InvalidParameter"),
        ({"status": "DONE"}, "InvalidParameter"),
        ({"start_time": "yesterday"}, "InvalidParameter"),
    ],
)
def test_bad_list_filters_are_invalid_parameter(
    api: httpx.Client, query: dict[str, str], code: str
) -> None:
    _error(api.get("/tasks", params=query), 400, code)
