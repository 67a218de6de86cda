"""Every Redis key synthgate uses is named here, and nowhere else.

Lua scripts that learn a tenant or a pool from a task record (claim, finish,
cancel, reap) build the same names with :data:`LUA`, the functions below
written in Lua; ``tests/gateway/test_keys.py`` checks that both spell them alike.
"""

from __future__ import annotations

PREFIX = "synthgate"


def task(task_id: str) -> str:
    """Hash: the task record."""
    return f"{PREFIX}:task:{task_id}"


def tenant_tasks(tenant: str) -> str:
    """Sorted set: a tenant's task ids scored by submit time (ms)."""
    return f"{PREFIX}:tenant:{tenant}:tasks"


def api_key(key_hash: str) -> str:
    """Hash: the tenant (and key id) an API key's SHA-256 belongs to."""
    return f"{PREFIX}:apikey:{key_hash}"


def signing_secret() -> str:
    """String: the secret that signs local file URLs, shared by all gateway replicas."""
    return f"{PREFIX}:signing-secret"


def pool_workers(pool: str) -> str:
    """Sorted set: workers serving ``pool``, scored by when their heartbeat expires (ms)."""
    return f"{PREFIX}:workers:{pool}"


# Tenants and their keys.


def tenants() -> str:
    """Set: every tenant's name."""
    return f"{PREFIX}:tenants"


def tenant(name: str) -> str:
    """Hash: a tenant's settings (enabled, limits, models, weight, times)."""
    return f"{PREFIX}:tenant:{name}"


def tenant_keys(name: str) -> str:
    """Set: the ids of a tenant's API keys (revoked ones included, for the record)."""
    return f"{PREFIX}:tenant:{name}:keys"


def key_info(key_id: str) -> str:
    """Hash: an API key's tenant, hash, label, creation, last use and revocation times."""
    return f"{PREFIX}:key:{key_id}"


def tenant_rate(name: str) -> str:
    """Sorted set: the tenant's submits of the last minute, scored by time (ms)."""
    return f"{PREFIX}:tenant:{name}:rate"


def tenant_active(name: str) -> str:
    """Sorted set: the tenant's unfinished tasks (record keys), scored by submit time (ms)."""
    return f"{PREFIX}:tenant:{name}:active"


def tenant_usage(name: str, day: str) -> str:
    """Hash: the tenant's counters for one UTC day (``YYYYMMDD``)."""
    return f"{PREFIX}:usage:{name}:{day}"


# Pools and the fair queue in front of them.


def celery_queue(pool: str) -> str:
    """List: the pool's Celery queue; kombu's Redis transport names it exactly like the queue."""
    return pool


def pending(pool: str, tenant: str) -> str:
    """List: a tenant's tasks (record keys) waiting to enter the pool's Celery queue."""
    return f"{PREFIX}:pool:{pool}:pending:{tenant}"


def backlog(pool: str) -> str:
    """List: one token per task waiting in any tenant's list of the pool (KEDA reads its
    length: its Redis scaler counts lists only)."""
    return f"{PREFIX}:pool:{pool}:backlog"


def ready(pool: str) -> str:
    """Sorted set: the pool's non-empty tenant lists, scored by their virtual pass."""
    return f"{PREFIX}:pool:{pool}:ready"


def fairness(pool: str) -> str:
    """Hash: the pool's virtual time and each tenant list's stride and last pass."""
    return f"{PREFIX}:pool:{pool}:fair"


def starting(pool: str) -> str:
    """Sorted set: tasks moved into the pool's Celery queue that no worker has claimed yet,
    scored by when they moved (ms)."""
    return f"{PREFIX}:pool:{pool}:starting"


LUA = f"""
local function k_tenant(name) return '{PREFIX}:tenant:' .. name end
local function k_api_key(key_hash) return '{PREFIX}:apikey:' .. key_hash end
local function k_key_info(key_id) return '{PREFIX}:key:' .. key_id end
local function k_active(name) return '{PREFIX}:tenant:' .. name .. ':active' end
local function k_usage(name, day) return '{PREFIX}:usage:' .. name .. ':' .. day end
local function k_queue(pool) return pool end
local function k_pending(pool, tenant) return '{PREFIX}:pool:' .. pool .. ':pending:' .. tenant end
local function k_backlog(pool) return '{PREFIX}:pool:' .. pool .. ':backlog' end
local function k_ready(pool) return '{PREFIX}:pool:' .. pool .. ':ready' end
local function k_fair(pool) return '{PREFIX}:pool:' .. pool .. ':fair' end
local function k_starting(pool) return '{PREFIX}:pool:' .. pool .. ':starting' end
"""
