"""Submit-body validation: the spec's fields, defaults and ranges, and nothing else.

Each failure raises an :class:`~gateway.edge.errors.ApiError` whose message names the
field and what is allowed, so a client can fix its request without reading code.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from gateway.edge.errors import InvalidParameter, shown
from taskcore.catalog import MODELS, ModelSpec
from taskcore.contract import GenerationRequest

MAX_PROMPT_WORDS = 75
MAX_SEED = 2**31 - 1
_SIZE = re.compile(r"^\s*(\d{1,5})\s*\*\s*(\d{1,5})\s*$")


def parse_submit(body: object, models: Mapping[str, ModelSpec] = MODELS) -> GenerationRequest:
    """Validate a decoded submit body and fill in the spec's defaults."""
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.")
    spec = _model(body.get("model"), models)
    prompt, negative = _input(body.get("input"))
    params = _parameters(body.get("parameters"))
    width, height = _size(params.get("size"), spec)
    seed = _integer(params, "seed", None, 0, MAX_SEED)
    return GenerationRequest(
        model=spec.name,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        n=_integer(params, "n", 1, 1, 4),
        steps=_integer(params, "steps", 50, 1, 500),
        scale=_number(params, "scale", 10, 1, 15),
        seed=secrets.randbelow(MAX_SEED - 3) if seed is None else seed,
    )


def truncate_words(text: str, limit: int = MAX_PROMPT_WORDS) -> str:
    """Keep the first ``limit`` words: the spec truncates longer prompts, it does not reject."""
    words = text.split()
    return text.strip() if len(words) <= limit else " ".join(words[:limit])


def _model(value: object, models: Mapping[str, ModelSpec]) -> ModelSpec:
    if value is None or value == "":
        raise InvalidParameter("Model can not be empty.", code="BadRequest.EmptyModel")
    if not isinstance(value, str):
        raise InvalidParameter("Field 'model' must be a string.")
    spec = models.get(value)
    if spec is None:
        known = ", ".join(sorted(models))
        raise InvalidParameter(f"Model not exist: {shown(value)}. Available models: {known}.")
    return spec


def _input(value: object) -> tuple[str, str]:
    if value is None or value == {} or value == "":
        raise InvalidParameter("Field 'input' can not be empty.", code="BadRequest.EmptyInput")
    if not isinstance(value, dict):
        raise InvalidParameter("Field 'input' must be an object with a 'prompt'.")
    prompt = value.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise InvalidParameter(
            "Field 'input.prompt' can not be empty.", code="BadRequest.EmptyInput"
        )
    if not isinstance(prompt, str):
        raise InvalidParameter("Field 'input.prompt' must be a string.")
    negative = value.get("negative_prompt")
    if negative is None:
        negative = ""
    if not isinstance(negative, str):
        raise InvalidParameter("Field 'input.negative_prompt' must be a string.")
    return truncate_words(prompt), truncate_words(negative)


def _parameters(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if value in ("", []):
        raise InvalidParameter(
            "Field 'parameters' can not be empty; omit it to use the defaults.",
            code="BadRequest.EmptyParameters",
        )
    raise InvalidParameter("Field 'parameters' must be an object.")


def _size(value: object, spec: ModelSpec) -> tuple[int, int]:
    if value is None:
        return spec.default_size
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidParameter(
            f"Field 'parameters.size' must be a string like '1024*1024', got {shown(value)}."
        )
    size = (int(match.group(1)), int(match.group(2)))
    if size not in spec.sizes:
        raise InvalidParameter(
            f"Size {size[0]}*{size[1]} is not supported by {spec.name}: {spec.describe_sizes()}."
        )
    return size


def _integer(params: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> Any:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"Field 'parameters.{name}' must be an integer, got {shown(value)}.")
    if not low <= value <= high:
        raise InvalidParameter(
            f"Field 'parameters.{name}' must be between {low} and {high}, got {shown(value)}."
        )
    return value


def _number(params: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = params.get(name)
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(f"Field 'parameters.{name}' must be a number, got {shown(value)}.")
    if not low <= value <= high:
        raise InvalidParameter(
            f"Field 'parameters.{name}' must be between {low:g} and {high:g}, got {shown(value)}."
        )
    return float(value)
