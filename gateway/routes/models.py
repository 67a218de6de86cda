"""``GET /api/v1/models``: the models the caller's tenant may call, with their rules.

A synthgate extension (DashScope has no such call): each model's sizes, ``n``,
``steps``/``scale``/``seed`` where they apply, prompt lengths, its other fields, and
whether DashScope answers it synchronously; the shape of :meth:`ModelSpec.to_json`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway.contracts.openapi import errors
from gateway.contracts.schemas import ModelList
from gateway.edge.deps import CurrentCaller
from gateway.edge.responses import JsonResponse, reply
from gateway.tenancy.auth import allowed_models

router = APIRouter(prefix="/api/v1", tags=["DashScope tasks"])


@router.get("/models", response_model=ModelList, responses=errors(401, 403, 503))
async def list_models(request: Request, caller: CurrentCaller) -> JsonResponse:
    catalog = request.app.state.settings.catalog
    names = await allowed_models(request.app.state.redis, caller.tenant, catalog.names())
    return reply(request, {"output": {"models": [catalog[name].to_json() for name in names]}})
