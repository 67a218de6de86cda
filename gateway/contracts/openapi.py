"""What the OpenAPI schema says that FastAPI cannot infer: the submit call's body and header.

The submit route reads its body itself (see :mod:`gateway.edge.bodies`) so that every bad
input gets a DashScope error; this describes that body for clients and for the fuzz
tests (schemathesis generates requests from it). Fields added by other features stay
allowed: the validator, not the schema, is the authority.
"""

from __future__ import annotations

from typing import Any

from gateway.contracts.dashscope import MAX_SEED


def _integer(low: int, high: int, description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "description": description}


def submit_openapi() -> dict[str, Any]:
    """``openapi_extra`` of the submit route: the ``X-DashScope-Async`` header and the body."""
    parameters = {
        "type": "object",
        "properties": {
            "size": {
                "type": "string",
                "pattern": r"^[0-9]{3,4}\*[0-9]{3,4}$",
                "description": "W*H; each model's sizes: GET /api/v1/models",
            },
            "n": _integer(1, 4, "images; default: the model's (GET /api/v1/models)"),
            "steps": _integer(1, 500, "denoising steps (Stable Diffusion), default 50"),
            "scale": {
                "type": "number",
                "minimum": 1,
                "maximum": 15,
                "description": "guidance scale (Stable Diffusion), default 10",
            },
            "seed": _integer(0, MAX_SEED, "random when absent; image i uses seed + i"),
        },
    }
    body = {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "description": "a model of GET /api/v1/models"},
            "input": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1},
                    "negative_prompt": {"type": "string"},
                },
            },
            "parameters": parameters,
        },
    }
    header = {
        "name": "X-DashScope-Async",
        "in": "header",
        "required": False,
        "description": "enable: answer at once with the task (PENDING); left out: wait for "
        "the result, for the models DashScope answers synchronously (GET /api/v1/models: sync)",
        "schema": {"type": "string", "enum": ["enable"]},
    }
    return {
        "parameters": [header],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
    }
