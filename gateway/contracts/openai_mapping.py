"""OpenAI's images API, mapped onto synthgate's: the request, the answer and the errors.

``POST /v1/images/generations`` takes OpenAI's fields (``model``, ``prompt``, ``n``,
``size`` as ``WxH``, ``response_format``) and becomes the DashScope submit body it
means, validated by the same rules (:func:`gateway.contracts.dashscope.parse_submit`). Fields
OpenAI has but Stable Diffusion does not use (``quality``, ``style``, ``user``, ...)
are accepted and ignored; synthgate's own (``negative_prompt``, ``seed``, ``steps``,
``scale``, ``priority``) may be sent too (the SDK's ``extra_body``); anything else is
refused, as OpenAI refuses unknown arguments. Errors are OpenAI-shaped:
``{"error": {"message", "type", "param", "code"}}`` with the HTTP status of the
DashScope error they stand for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from gateway.contracts.dashscope import builtin_catalog, parse_submit
from gateway.edge.errors import ApiError, InvalidParameter
from gateway.edge.responses import JsonResponse
from taskcore.catalog import Catalog
from taskcore.contract import GenerationRequest

ResponseFormat = Literal["url", "b64_json"]

_IGNORED = {"quality", "style", "user", "moderation", "background", "output_compression"}
_EXTENSIONS = {"negative_prompt", "seed", "steps", "scale", "priority"}
_OWN = {"model", "prompt", "n", "size", "response_format", "output_format", "stream"}
_SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")
MAX_N = 4

_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
_CODES = {
    "InvalidApiKey": "invalid_api_key",
    "InvalidParameter": "invalid_value",
    "BadRequest.TooLarge": "request_too_large",
    "Throttling.RateQuota": "rate_limit_exceeded",
    "InternalError": "server_error",
}


@dataclass(frozen=True, slots=True)
class ImagesRequest:
    """A validated images request: the job, and how the images come back."""

    job: GenerationRequest
    response_format: ResponseFormat


def parse_images_request(
    body: object, default_model: str, catalog: Catalog | None = None
) -> ImagesRequest:
    """Validate an OpenAI images body into the job it asks for."""
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.")
    unknown = sorted(set(body) - _OWN - _IGNORED - _EXTENSIONS)
    if unknown:
        raise InvalidParameter(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameter("'prompt' is required: a non-empty string.")
    if body.get("stream"):
        raise InvalidParameter("Streaming is not supported: send 'stream': false or leave it out.")
    if body.get("output_format") not in (None, "png"):
        raise InvalidParameter("'output_format' must be 'png': synthgate makes PNG images.")
    response_format: ResponseFormat = "url"
    if body.get("response_format") == "b64_json":
        response_format = "b64_json"
    elif body.get("response_format") not in (None, "url"):
        raise InvalidParameter("'response_format' must be 'url' or 'b64_json'.")
    model = body.get("model") or default_model
    catalog = catalog or builtin_catalog()
    if not isinstance(model, str) or (model not in catalog and model not in catalog.unavailable):
        known = ", ".join(catalog.names())
        raise InvalidParameter(f"The model {model!r:.80} does not exist; use one of: {known}.")
    parameters = {name: body[name] for name in ("seed", "steps", "scale") if name in body}
    parameters["n"] = _n(body.get("n"))
    size = _size(body.get("size"))
    if size is not None:
        parameters["size"] = size
    text: dict[str, Any] = {"prompt": prompt, "negative_prompt": body.get("negative_prompt")}
    job = parse_submit({"model": model, "input": text, "parameters": parameters}, catalog)
    return ImagesRequest(job, response_format)


def _n(value: object) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_N:
        raise InvalidParameter(f"'n' must be an integer from 1 to {MAX_N}, got {value!r:.40}.")
    return value


def _size(value: object) -> str | None:
    """OpenAI's ``1024x1024`` as DashScope's ``1024*1024``; None (the model's default) for
    ``auto`` or nothing."""
    if value is None or value == "auto":
        return None
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidParameter(f"'size' must look like '1024x1024', got {value!r:.40}.")
    return f"{match.group(1)}*{match.group(2)}"


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """OpenAI's error object for an answer of HTTP ``status``."""
    kind = _TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_response(exc: ApiError) -> JsonResponse:
    """A DashScope error (its status and headers kept), said the way OpenAI says it."""
    code = _CODES.get(exc.code, exc.code)
    body = error_body(exc.status_code, code, exc.message)
    return JsonResponse(body, status_code=exc.status_code, headers=exc.headers)
