"""The admin API's view of the capacity, ``/admin/v1``: each pool's queue and workers, and
each DashScope account's running tasks against its limits.

The same figures as the ``synthgate_pool_*`` and ``synthgate_upstream_account_*`` metrics
(gateway/operations/pool_stats.py), as JSON for the console; the same token as the rest of
the admin API (gateway/routes/admin.py), mounted with it.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request

from gateway.contracts.admin_schemas import AccountList, PoolList
from gateway.contracts.openapi import errors
from gateway.edge.responses import JsonResponse, reply
from gateway.operations.pool_stats import account_stats, pool_stats, routed_pools
from gateway.routes.admin import require_admin
from taskcore.settings import Settings

router = APIRouter(prefix="/admin/v1", tags=["Admin"], dependencies=[Depends(require_admin)])


@router.get("/pools", response_model=PoolList, responses=errors(401, 503))
async def pools(request: Request) -> JsonResponse:
    """Each pool the catalog routes to: tasks waiting, the oldest's wait, live workers."""
    settings: Settings = request.app.state.settings
    stats = await pool_stats(request.app.state.redis, routed_pools(settings))
    return reply(request, {"pools": [asdict(pool) for pool in stats]})


@router.get("/upstream-accounts", response_model=AccountList, responses=errors(401, 503))
async def upstream_accounts(request: Request) -> JsonResponse:
    """Each DashScope account the upstream workers registered: tasks running per model
    against its limit, tasks waiting for its models, and how long it still rests after a
    429 (0: not throttled)."""
    settings: Settings = request.app.state.settings
    stats = await account_stats(request.app.state.redis, settings.catalog)
    return reply(request, {"accounts": [asdict(account) for account in stats]})
