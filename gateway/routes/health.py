"""Liveness and readiness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from gateway.contracts.schemas import Health
from gateway.contracts.schemas import Readiness as ReadinessReport
from gateway.edge.responses import JsonResponse
from gateway.operations.readiness import Readiness, parse_exclude

router = APIRouter(tags=["Operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> JsonResponse:
    """The process is alive."""
    return JsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadinessReport,
    responses={503: {"model": ReadinessReport, "description": "not ready: the failed checks"}},
)
async def readyz(
    request: Request, exclude: Annotated[list[str] | None, Query()] = None
) -> JsonResponse:
    """200 when Redis and storage answer and every routed pool has a live worker; else 503.

    ``?exclude=workers`` (or ``storage``, ``redis``; repeated or comma-separated) leaves
    checks out.
    """
    readiness: Readiness = request.app.state.readiness
    ready, body = await readiness.report(parse_exclude(exclude or []))
    return JsonResponse(body, status_code=200 if ready else 503)
