"""Every Redis key synthgate uses is named here, and nowhere else.

Lua scripts that learn a tenant or a pool from a task record (claim, finish,
cancel, reap) build the same names with ``k_*`` functions (``lib/keys.lua`` in
:mod:`taskcore.scripts`); ``tests/taskcore/test_redis_keys.py`` checks that both spell
them alike.
"""

from __future__ import annotations

PREFIX = "synthgate"


def task(task_id: str) -> str:
    """Hash: the task record."""
    return f"{PREFIX}:task:{task_id}"


def tenant_tasks(tenant: str) -> str:
    """Sorted set: a tenant's task ids scored by submit time (ms)."""
    return f"{PREFIX}:tenant:{tenant}:tasks"


# The listing indexes (see taskcore/store/taskindex.py): one sorted set per filter a list can ask
# for, so that a page is a range read whatever the tenant has.


def tenant_model_tasks(tenant: str, model: str) -> str:
    """Sorted set: a tenant's task ids of one model, scored by submit time (ms)."""
    return f"{PREFIX}:tenant:{tenant}:model:{model}:tasks"


def tenant_status_tasks(tenant: str, status: str) -> str:
    """Sorted set: a tenant's task ids that ended with one final status, by submit time (ms)."""
    return f"{PREFIX}:tenant:{tenant}:status:{status}:tasks"


def tenant_model_status_tasks(tenant: str, model: str, status: str) -> str:
    """Sorted set: a tenant's task ids of one model and final status, by submit time (ms)."""
    return f"{PREFIX}:tenant:{tenant}:model:{model}:status:{status}:tasks"


def tenant_expiring(tenant: str) -> str:
    """Sorted set: the tenant's finished tasks as ``status|model|task_id``, scored by when
    their record expires (ms): what takes them out of the listing indexes."""
    return f"{PREFIX}:tenant:{tenant}:expiring"


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


def idempotency(tenant: str, idempotency_key: str) -> str:
    """Hash: the task a tenant's ``Idempotency-Key`` made, and its request's fingerprint
    (tenant names have no ``:``, so the key after them is unambiguous)."""
    return f"{PREFIX}:idem:{tenant}:{idempotency_key}"


def tenant_webhook_secret(name: str) -> str:
    """String: the secret that signs the tenant's webhook deliveries
    (see taskcore/webhooks/payload.py)."""
    return f"{PREFIX}:tenant:{name}:webhook-secret"


def webhooks_due() -> str:
    """Sorted set: finished tasks (record keys) with a webhook to deliver, scored by when the
    next attempt is due (ms); a worker delivering one pushes its score ahead as a lease."""
    return f"{PREFIX}:webhooks:due"


def reaper_sweep() -> str:
    """Hash: where the reaper's sweep of the tenants' unfinished sets stands: the tenant
    it is in and the ``ZSCAN`` cursor there (see ``taskcore/reaper.py``)."""
    return f"{PREFIX}:reaper:sweep"


def reaper_promoted(identity: str) -> str:
    """String: when a reaper first saw this Redis (``run_id:master_replid``) as a primary
    promoted by a failover (ms, Redis' clock; see ``taskcore/reaper.py``)."""
    return f"{PREFIX}:reaper:promoted:{identity}"


def reaper_unswept() -> str:
    """Set: the tenants the reaper's current sweep has not visited yet."""
    return f"{PREFIX}:reaper:unswept"


def task_id_of(record_key: str) -> str:
    """The task id in a record key (sets of record keys name tasks that way)."""
    return record_key.removeprefix(f"{PREFIX}:task:")


# Pools and the fair queue in front of them.


def celery_queue(pool: str) -> str:
    """List: the pool's Celery queue; kombu's Redis transport names it exactly like the queue."""
    return pool


def pending(pool: str, tenant: str) -> str:
    """List: a tenant's ``normal`` priority tasks (record keys) waiting to enter the pool's
    Celery queue; its name also stands for the tenant in the pool's ``ready`` set."""
    return f"{PREFIX}:pool:{pool}:pending:{tenant}"


def pending_level(pending_list: str, priority: str) -> str:
    """List: the tenant's tasks of one priority level, named after its ``pending`` list."""
    return pending_list if priority == "normal" else f"{pending_list}:{priority}"


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


def claimed(pool: str) -> str:
    """Sorted set: the pool's RUNNING tasks (record keys), scored by their last claim (ms);
    the reaper fails those claimed longer than the task deadline ago."""
    return f"{PREFIX}:pool:{pool}:claimed"


def leases(pool: str) -> str:
    """Sorted set: the pool's RUNNING tasks (record keys), scored by when their worker's lease
    on them expires (ms); the reaper hands a task whose lease expired to another worker."""
    return f"{PREFIX}:pool:{pool}:leases"


def upstream_running(account: str, model: str) -> str:
    """Set: the task records running on DashScope under ``account`` for ``model`` (what
    the account's ``max_running`` counts, for all upstream workers together)."""
    return f"{PREFIX}:upstream:{account}:model:{model}:running"


def upstream_submits(account: str, model: str) -> str:
    """Sorted set: the account's recent submits of ``model`` to DashScope, scored by when
    (ms, Redis' clock); what its ``submit_per_second`` counts (DashScope counts per model)."""
    return f"{PREFIX}:upstream:{account}:model:{model}:submits"


def upstream_rest(account: str) -> str:
    """String: until when (ms) the account rests after DashScope throttled it."""
    return f"{PREFIX}:upstream:{account}:rest"


def upstream_running_sets() -> str:
    """Set: every :func:`upstream_running` set in use, for the reaper's reconciliation."""
    return f"{PREFIX}:upstream:running-sets"


def upstream_accounts() -> str:
    """Hash: account name -> its limits and models (JSON, no key), as workers registered
    them; read by the gateway's metrics."""
    return f"{PREFIX}:upstream:accounts"
