"""Submit-body validation: the fields, defaults and ranges of the model's catalog entry.

Each failure raises an :class:`~gateway.edge.errors.ApiError` whose message names the
field and what is allowed, so a client can fix its request without reading code. The
rules come from the model's entry in :mod:`taskcore.catalog`: the Stable Diffusion spec's
for the two SD models, DashScope's for wanx/wan and qwen-image. A field the catalog knows
but this model does not take is refused (it would silently do nothing); a field no model
takes is ignored, as DashScope ignores it.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Mapping
from typing import Any

from gateway.edge.errors import InvalidParameter, shown
from taskcore.catalog import Bounds, Catalog, FieldRule, ModelSpec, TextRule, load_catalog
from taskcore.contract import GenerationRequest

MAX_PROMPT_WORDS = 75  # the SD spec's; other models' limits are in the catalog
MAX_SEED = 2**31 - 1
OSS_HEADER = "x-dashscope-ossresourceresolve"
_SIZE = re.compile(r"^\s*(\d{1,5})\s*\*\s*(\d{1,5})\s*$")
_NUMERIC = ("steps", "scale", "seed")


@functools.cache
def builtin_catalog() -> Catalog:
    """The built-in catalog, for callers without settings (tests, tools)."""
    return load_catalog(None)


def parse_submit(
    body: object, catalog: Catalog | None = None, headers: Mapping[str, str] | None = None
) -> GenerationRequest:
    """Validate a decoded submit body against its model's rules and fill in the defaults."""
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.")
    catalog = catalog or builtin_catalog()
    spec = _model(body.get("model"), catalog)
    if headers is not None and headers.get(OSS_HEADER, "").lower() == "enable":
        raise InvalidParameter(_OSS_MESSAGE)
    inputs = _input(body.get("input"))
    params = _parameters(body.get("parameters"))
    _refuse_unsupported(spec, inputs, params, catalog)
    prompt = _text(inputs.get("prompt"), "input.prompt", spec.prompt)
    negative = ""
    if spec.negative_prompt is not None:
        negative = _text(
            inputs.get("negative_prompt"), "input.negative_prompt", spec.negative_prompt
        )
    width, height = _size(params.get("size"), spec)
    seed = _integer(params, "seed", spec.seed) if spec.seed is not None else None
    return GenerationRequest(
        model=spec.name,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        n=_integer(params, "n", spec.n),
        steps=_integer(params, "steps", spec.steps) if spec.steps is not None else 0,
        scale=_number(params, "scale", spec.scale) if spec.scale is not None else 0.0,
        seed=secrets.randbelow(MAX_SEED - 3) if seed is None else seed,
        options={
            name: value
            for name, rule in spec.fields.items()
            if (value := _option(rule, inputs if rule.where == "input" else params)) is not None
        },
    )


def truncate_words(text: str, limit: int = MAX_PROMPT_WORDS) -> str:
    """Keep the first ``limit`` words: the spec truncates longer prompts, it does not reject."""
    return TextRule(max_words=limit).apply(text)


_OSS_MESSAGE = (
    "Files uploaded through the SDK's temporary OSS storage (oss:// URLs, header "
    "X-DashScope-OssResourceResolve) are not supported by this gateway; send the image as "
    "an http(s) URL it can download instead."
)


def _model(value: object, catalog: Catalog) -> ModelSpec:
    if value is None or value == "":
        raise InvalidParameter("Model can not be empty.", code="BadRequest.EmptyModel")
    if not isinstance(value, str):
        raise InvalidParameter("Field 'model' must be a string.")
    spec = catalog.get(value)
    if spec is None:
        if value in catalog.unavailable:
            raise InvalidParameter(catalog.unavailable[value])
        known = ", ".join(catalog.names())
        raise InvalidParameter(f"Model not exist: {shown(value)}. Available models: {known}.")
    return spec


def _input(value: object) -> dict[str, Any]:
    if value is None or value == {} or value == "":
        raise InvalidParameter("Field 'input' can not be empty.", code="BadRequest.EmptyInput")
    if not isinstance(value, dict):
        raise InvalidParameter("Field 'input' must be an object with a 'prompt'.")
    prompt = value.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise InvalidParameter(
            "Field 'input.prompt' can not be empty.", code="BadRequest.EmptyInput"
        )
    return value


def _text(value: object, name: str, rule: TextRule) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParameter(f"Field '{name}' must be a string.")
    return rule.apply(value)


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


def _refuse_unsupported(
    spec: ModelSpec, inputs: Mapping[str, Any], params: Mapping[str, Any], catalog: Catalog
) -> None:
    """A field some model takes, sent to one that does not: refused, never silently dropped."""
    known = _known_fields(catalog)
    takes = {n for n in _NUMERIC if getattr(spec, n) is not None} | set(spec.fields)
    if spec.negative_prompt is not None:
        takes.add("negative_prompt")
    sent = [
        f"parameters.{n}" for n in params if n in known and n not in takes and params[n] is not None
    ]
    sent += [
        f"input.{n}" for n in inputs if n in known and n not in takes and inputs[n] is not None
    ]
    if sent:
        takes_text = ", ".join(sorted(takes)) or "no optional fields"
        raise InvalidParameter(
            f"Model {spec.name} does not take {', '.join(sorted(sent))}; it takes {takes_text}."
        )


def _known_fields(catalog: Catalog) -> frozenset[str]:
    names = {"negative_prompt", *_NUMERIC}
    for spec in catalog.models.values():
        names.update(spec.fields)
    return frozenset(names)


def _size(value: object, spec: ModelSpec) -> tuple[int, int]:
    if value is None:
        return spec.size.default
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidParameter(
            f"Field 'parameters.size' must be a string like '1024*1024', got {shown(value)}."
        )
    width, height = int(match.group(1)), int(match.group(2))
    if not spec.size.allows(width, height):
        raise InvalidParameter(
            f"Size {width}*{height} is not supported by {spec.name}: {spec.describe_sizes()}."
        )
    return width, height


def _integer(params: Mapping[str, Any], name: str, bounds: Bounds) -> Any:
    value = params.get(name)
    if value is None:
        return None if bounds.default is None else int(bounds.default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"Field 'parameters.{name}' must be an integer, got {shown(value)}.")
    if not bounds.low <= value <= bounds.high:
        raise InvalidParameter(
            f"Field 'parameters.{name}' must be between {bounds.low:g} and {bounds.high:g}, "
            f"got {shown(value)}."
        )
    return value


def _number(params: Mapping[str, Any], name: str, bounds: Bounds) -> float:
    value = params.get(name)
    if value is None:
        return float(bounds.default or 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(f"Field 'parameters.{name}' must be a number, got {shown(value)}.")
    if not bounds.low <= value <= bounds.high:
        raise InvalidParameter(
            f"Field 'parameters.{name}' must be between {bounds.low:g} and {bounds.high:g}, "
            f"got {shown(value)}."
        )
    return float(value)


def _option(rule: FieldRule, source: Mapping[str, Any]) -> Any:
    """A model-specific field's value (its default when absent), checked against its rule."""
    value = source.get(rule.name)
    if value is None:
        return rule.default
    name = f"{rule.where}.{rule.name}"
    if rule.type == "bool":
        if not isinstance(value, bool):
            raise InvalidParameter(f"Field '{name}' must be true or false, got {shown(value)}.")
        return value
    if rule.type in ("integer", "number"):
        bounds = Bounds(
            rule.low if rule.low is not None else float("-inf"),
            rule.high if rule.high is not None else float("inf"),
        )
        source = {rule.name: value}
        if rule.type == "integer":
            return _integer(source, rule.name, bounds)
        return _number(source, rule.name, bounds)
    if not isinstance(value, str):
        raise InvalidParameter(f"Field '{name}' must be a string, got {shown(value)}.")
    if rule.type == "choice" and value not in rule.choices:
        allowed = ", ".join(rule.choices)
        raise InvalidParameter(f"Field '{name}' must be one of {allowed}, got {shown(value)}.")
    if rule.type == "url":
        if value.startswith("oss://"):
            raise InvalidParameter(_OSS_MESSAGE)
        if not re.match(r"^https?://[^\s/]+\S*$", value) or len(value) > 2048:
            raise InvalidParameter(f"Field '{name}' must be an http(s) URL, got {shown(value)}.")
    if rule.max_chars and len(value) > rule.max_chars:
        raise InvalidParameter(f"Field '{name}' is longer than {rule.max_chars} characters.")
    return value
