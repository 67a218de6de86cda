"""Liveness and readiness."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from gateway import keys
from gateway.catalog import LOCAL_QUEUES, UPSTREAM_QUEUE
from gateway.responses import JsonResponse

router = APIRouter()

POOLS = (*LOCAL_QUEUES, UPSTREAM_QUEUE)


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
    now_ms = time.time() * 1000
    pools = {pool: await client.zcount(keys.pool_workers(pool), now_ms, "+inf") for pool in POOLS}
    return JsonResponse({"status": "ok", "redis": "ok", "workers": pools})
