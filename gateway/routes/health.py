"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gateway import keys
from gateway.catalog import LOCAL_QUEUES
from gateway.responses import JsonResponse

router = APIRouter()


@router.get("/healthz")
async def healthz() -> JsonResponse:
    """The process is alive."""
    return JsonResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JsonResponse:
    """Ready when Redis answers; reports which pools have a live worker."""
    client = request.app.state.redis
    try:
        await client.ping()
    except Exception as exc:  # any connection failure means "not ready", not a 500
        return JsonResponse({"status": "unavailable", "redis": str(exc)}, status_code=503)
    pools = {}
    for queue in LOCAL_QUEUES:
        found = [
            k async for k in client.scan_iter(match=keys.worker_heartbeat_pattern(queue), count=100)
        ]
        pools[queue] = len(found)
    return JsonResponse({"status": "ok", "redis": "ok", "workers": pools})
